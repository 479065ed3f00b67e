// `ballast status` and `ballast policy set|get|list|delete` as an operator runs them, against
// `ballast demo --api PATH` in another process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

function ballast(args: string[], input?: string): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (c: Buffer) => {
    out += c;
  });
  child.stderr.on('data', (c: Buffer) => {
    err += c;
  });
  child.stdin.end(input ?? '');
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, out, err })));
}

test('ballast status and policy set/get/list/delete against a running demo', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ballast-cli-api-'));
  const sock = join(dir, 'api.sock');
  const demo = spawn(
    process.execPath,
    ['--import', 'tsx', 'src/cli/main.ts', 'demo', '--api', sock, '--dashboard', 'off', '--speed', '50', '--duration', '120'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let demoOut = '';
  demo.stdout.on('data', (c: Buffer) => {
    demoOut += c;
  });
  try {
    // The socket can appear a moment before the line that announces it is written out.
    const listening = new RegExp(`listening: api unix:${sock}`);
    for (let i = 0; i < 150 && !(existsSync(sock) && listening.test(demoOut)); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(existsSync(sock), `the demo serves its API: ${demoOut}`);
    assert.match(demoOut, listening);

    const status = await ballast(['status', '--api', sock]);
    assert.equal(status.code, 0, status.err);
    assert.match(status.out, /^ballast .*: ok — sim scenario demo/);
    assert.match(status.out, /guests \(\d+\):\n {2}web1 +balloon/);

    const list = await ballast(['policy', 'list', '--api', sock]);
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /^default\tfile\t.*default\.policy\n$/);

    const file = join(dir, 'p.policy');
    writeFileSync(file, '(defvar ballast_cli_test 1)\n');
    const set = await ballast(['policy', 'set', '01-parameters', file, '--api', sock]);
    assert.equal(set.code, 0, set.err);
    const fromStdin = await ballast(['policy', 'set', '02-more', '-', '--api', sock], '(defvar two 2)\n');
    assert.equal(fromStdin.code, 0, fromStdin.err);
    assert.equal((await ballast(['policy', 'get', '01-parameters', '--api', sock])).out, '(defvar ballast_cli_test 1)\n');
    assert.deepEqual(
      (await ballast(['policy', 'list', '--api', sock])).out
        .split('\n')
        .filter(Boolean)
        .map((l) => l.split('\t')[0]),
      ['01-parameters', '02-more', 'default'],
    );

    const bad = await ballast(['policy', 'set', '03-bad', '-', '--api', sock], '(defvar x\n');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /policy refused: api:03-bad:\d+:\d+: /);

    assert.equal((await ballast(['policy', 'delete', '02-more', '--api', sock])).code, 0);
    const gone = await ballast(['policy', 'get', '02-more', '--api', sock]);
    assert.equal(gone.code, 1);
    assert.match(gone.err, /no such policy/);

    const nobody = await ballast(['status', '--api', join(dir, 'none.sock')]);
    assert.notEqual(nobody.code, 0);
    assert.match(nobody.err, /no ballast daemon answers there/);
  } finally {
    demo.kill('SIGTERM');
    await new Promise((r) => demo.on('close', r));
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ballast status says when the loop is calm (its cycle counter advances slower then)', async () => {
  const { formatStatus } = await import('../../../src/cli/status.js');
  const h = {
    status: 'ok',
    version: '1',
    hypervisor: 'libvirt qemu:///system',
    startedAt: 0,
    time: 9,
    cycle: 7,
    paused: false,
    policyLoaded: true,
    calm: true,
    problems: [] as string[],
  } as const;
  const first = (calm: boolean) => formatStatus({ ...h, calm }, { stats: {}, vars: {} }, [], [], []).split('\n')[0];
  assert.match(first(true) ?? '', /cycle 7 \(calm: nothing moved, collecting less often\)$/);
  assert.match(first(false) ?? '', /cycle 7$/);
});
