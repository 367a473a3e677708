#!/usr/bin/env node
// `npm run check`: the static checks, run side by side; each one's output is shown in full once
// it ends, then one line per check with its time. Exits non-zero when any check fails.
//   node scripts/check.mjs            all of them
//   node scripts/check.mjs lint types only those named
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = (name) => join(root, 'node_modules', '.bin', name);

/** name → argv; the same commands as the package.json scripts of the same name. */
const CHECKS = {
  types: [bin('tsc'), '-p', 'tsconfig.check.json'],
  lint: [bin('eslint'), '--max-warnings', '0', '.'],
  format: [
    bin('prettier'),
    '--check',
    '--cache',
    '--cache-strategy',
    'content',
    '--log-level',
    'warn',
    '**/*.{ts,mts,cts,js,mjs,cjs,json}',
  ],
  layers: [bin('depcruise'), '.', '--config', '.dependency-cruiser.cjs'],
};

const wanted = process.argv.slice(2);
for (const w of wanted) {
  if (!(w in CHECKS)) {
    console.error(`check: unknown check ${JSON.stringify(w)} (known: ${Object.keys(CHECKS).join(', ')})`);
    process.exit(2);
  }
}
const names = wanted.length > 0 ? wanted : Object.keys(CHECKS);

/** @returns {Promise<{ name: string, code: number, ms: number, out: string }>} */
function runCheck(name) {
  const [cmd, ...args] = CHECKS[name];
  const start = performance.now();
  return new Promise((resolve) => {
    const chunks = [];
    const child = spawn(cmd, args, {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NO_COLOR: '1', FORCE_COLOR: undefined },
    });
    child.stdout.on('data', (c) => chunks.push(c));
    child.stderr.on('data', (c) => chunks.push(c));
    child.on('error', (err) => resolve({ name, code: 127, ms: performance.now() - start, out: `${cmd}: ${err.message}\n` }));
    child.on('close', (code, signal) =>
      resolve({ name, code: code ?? (signal ? 128 : 1), ms: performance.now() - start, out: Buffer.concat(chunks).toString() }),
    );
  });
}

const start = performance.now();
const results = await Promise.all(names.map(runCheck));
for (const r of results) {
  const out = r.out.trim();
  if (r.code !== 0 && out) console.log(`\n── check ${r.name} ──\n${out}`);
}
console.log('');
for (const r of results) {
  console.log(
    `check: ${r.code === 0 ? 'ok  ' : 'FAIL'} ${r.name.padEnd(7)} ${(r.ms / 1000).toFixed(1)} s  (${CHECKS[r.name].slice(1).join(' ')})`,
  );
}
const failed = results.filter((r) => r.code !== 0).map((r) => r.name);
console.log(
  `check: ${failed.length === 0 ? 'all passed' : `FAILED: ${failed.join(', ')}`} in ${((performance.now() - start) / 1000).toFixed(1)} s`,
);
process.exitCode = failed.length === 0 ? 0 : 1;
