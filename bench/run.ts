// `npm run bench [name...]`: runs every bench/*.bench.ts (or those named), one after another.
// Each prints its own lines: measured numbers and ratios against a baseline measured in the
// same run, never absolute pass/fail timings.
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';

const here = dirname(fileURLToPath(import.meta.url));
const wanted = process.argv.slice(2);
const files = readdirSync(here)
  .filter((f) => f.endsWith('.bench.ts'))
  .filter((f) => wanted.length === 0 || wanted.some((w) => f.startsWith(w)))
  .sort();
for (const f of files) {
  process.stdout.write(`\n== ${f.replace('.bench.ts', '')} ==\n`);
  const mod = await import(pathToFileURL(join(here, f)).href);
  if (typeof mod.default === 'function') await mod.default();
}
