// The dashboard in a real browser: Debian's chromium driven by playwright-core opens the page
// of a running `ballast demo`, sees charts with data points and the guest list, watches values
// change, and saves a screenshot. Skips (loudly) only where chromium is not installed, and
// never in CI, where lab/install-deps.sh installs it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const CHROMIUM = process.env.BALLAST_CHROMIUM ?? '/usr/bin/chromium';

test('dashboard in chromium: charts with data, the guest list, live updates, a screenshot', async (t) => {
  if (!existsSync(CHROMIUM)) {
    const why = `${CHROMIUM} is not installed (apt-get install chromium, or lab/install-deps.sh)`;
    if (process.env.CI) assert.fail(`browser test cannot run in CI: ${why}`);
    console.error(`BROWSER TEST SKIPPED: ${why}`);
    t.skip(why);
    return;
  }
  const demo = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'demo', '--dashboard', '127.0.0.1:0', '--speed', '40', '--duration', '120'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  demo.stdout.on('data', (c: Buffer) => {
    out += c;
  });
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--headless=new'] });
  try {
    for (let i = 0; i < 200 && !/dashboard: http/.test(out); i++) await new Promise((r) => setTimeout(r, 100));
    const url = /dashboard: (http:\/\/\S+)/.exec(out)?.[1];
    assert.ok(url, `the demo prints its dashboard URL: ${out}`);
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    await page.goto(url);

    // Charts with points: uPlot draws a canvas per chart; the page reports what each holds.
    await page.waitForFunction(
      () => {
        const c = (window as unknown as { ballastDashboard?: { charts(): { host: number; guests: Record<string, number> } } }).ballastDashboard?.charts();
        return c !== undefined && c.host >= 3 && Object.values(c.guests).some((n) => n >= 3);
      },
      undefined,
      { timeout: 30_000 },
    );
    assert.ok((await page.locator('#host-chart canvas').count()) >= 1, 'host chart drawn');
    assert.ok((await page.locator('#guest-charts .guest-chart canvas').count()) >= 3, 'a chart per guest');
    const guests = await page.locator('#guests tbody tr').allInnerTexts();
    assert.ok(
      guests.some((r) => r.startsWith('web1')),
      `guest list: ${guests.join(' | ')}`,
    );
    assert.match((await page.locator('#status').textContent()) ?? '', /^ok$|^degraded$/);
    // The guests' own memory stall (the simulated guests report PSI as a guest agent would).
    const stalls = await page.locator('#guests tbody td.stall').allInnerTexts();
    assert.ok(stalls.length >= 3 && stalls.every((x) => /^\d+\.\d%$/.test(x)), `stall column: ${stalls.join(' | ')}`);

    // Live: the header's cycle count and the chart's points move without a reload.
    const meta1 = await page.locator('#meta').textContent();
    const points1 = await page.evaluate(() => (window as unknown as { ballastDashboard: { charts(): { host: number } } }).ballastDashboard.charts().host);
    await page.waitForFunction((p) => (window as unknown as { ballastDashboard: { charts(): { host: number } } }).ballastDashboard.charts().host > p, points1, {
      timeout: 20_000,
    });
    await page.waitForFunction((m) => document.querySelector('#meta')?.textContent !== m, meta1, { timeout: 20_000 });
    await page.waitForFunction(
      () => (document.querySelector('#actions')?.children.length ?? 0) > 0 && !/none yet/.test(document.querySelector('#actions')?.textContent ?? ''),
      undefined,
      { timeout: 30_000 },
    );

    // One file, overwritten by each run (kept for a human to look at, not one folder per run).
    const shot = join(tmpdir(), `ballast-dashboard-${process.getuid?.() ?? 0}.png`);
    await page.screenshot({ path: shot, fullPage: true });
    assert.ok(statSync(shot).size > 20_000, 'a screenshot with something in it');
    console.error(`dashboard screenshot: ${shot}`);
    assert.deepEqual(errors, [], 'no errors in the page');
  } finally {
    await browser.close();
    demo.kill('SIGTERM');
    await new Promise((r) => demo.on('close', r));
  }
});
