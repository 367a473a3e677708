#!/usr/bin/env node
// Coverage floors, checked after `tap` in `npm test` (tap itself only knows one global threshold).
// Reads .tap/report/coverage-summary.json (tap's "json-summary" coverage report, see "tap" in
// package.json), prints the overall line coverage and each floored folder's, and exits non-zero
// when a folder is below its floor. A .ts file of a floored folder that no test loaded counts as
// 0 % of its lines, unless it is type-only (no code at run time): not testing a file is no way out.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** Folder (relative to the repository) → minimum % of lines covered, over all its .ts files. */
export const FLOORS = {
  'src/wire': 90,
  'src/dialects': 90,
  'src/identity': 90,
  'src/config': 90,
};

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const summaryPath = join(root, '.tap', 'report', 'coverage-summary.json');
const coverageDir = join(root, '.tap', 'coverage');

function die(msg) {
  console.error(`coverage: FAILED: ${msg}`);
  process.exit(1);
}

if (!existsSync(summaryPath)) die(`no ${relative(root, summaryPath)}; run tap first (npm test does)`);
const summaryTime = statSync(summaryPath).mtimeMs;
const newestRun = existsSync(coverageDir) ? Math.max(0, ...readdirSync(coverageDir).map((f) => statSync(join(coverageDir, f)).mtimeMs)) : 0;
if (newestRun > summaryTime) die(`${relative(root, summaryPath)} is older than the last run's coverage data; run tap again`);

/** @type {Record<string, { lines: { total: number, covered: number, pct: number } }>} */
const summary = JSON.parse(readFileSync(summaryPath, 'utf8'));
const byFile = new Map(
  Object.entries(summary)
    .filter(([k]) => k !== 'total')
    .map(([k, v]) => [relative(root, k), v.lines]),
);

const pct = (covered, total) => (total === 0 ? 100 : (100 * covered) / total);
const fmt = (p) => `${p.toFixed(2).padStart(6)} %`;

function tsFiles(dir) {
  if (!existsSync(join(root, dir))) return [];
  return readdirSync(join(root, dir), { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => relative(root, join(e.parentPath ?? e.path, e.name)))
    .sort();
}

/** True when the file compiles to no code at all (only types, interfaces, `import type`...). */
function typeOnly(file) {
  const src = readFileSync(join(root, file), 'utf8');
  const js = ts.transpileModule(src, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, removeComments: true },
  }).outputText;
  return js.replace(/export\s*\{\s*\};?/g, '').trim() === '';
}

const total = summary.total.lines;
console.log(`coverage: overall ${fmt(total.pct)} of lines (${total.covered}/${total.total}, files loaded by tests)`);

let failed = false;
for (const [dir, floor] of Object.entries(FLOORS)) {
  let covered = 0;
  let lines = 0;
  const rows = [];
  for (const file of tsFiles(dir)) {
    const c = byFile.get(file);
    if (c) {
      covered += c.covered;
      lines += c.total;
      rows.push({ file, covered: c.covered, total: c.total, note: '' });
    } else if (!typeOnly(file)) {
      const n = readFileSync(join(root, file), 'utf8').split('\n').length;
      lines += n;
      rows.push({ file, covered: 0, total: n, note: ' (no test loads it)' });
    }
  }
  if (lines === 0) {
    console.log(`coverage: ok   ${dir.padEnd(13)}   no code yet, floor ${floor} %`);
    continue;
  }
  const p = pct(covered, lines);
  const ok = p >= floor;
  failed ||= !ok;
  console.log(`coverage: ${ok ? 'ok  ' : 'FAIL'} ${dir.padEnd(13)} ${fmt(p)} of lines (${covered}/${lines}), floor ${floor} %`);
  if (!ok) {
    for (const r of rows.filter((r) => pct(r.covered, r.total) < floor).sort((a, b) => pct(a.covered, a.total) - pct(b.covered, b.total))) {
      console.log(`coverage:        ${fmt(pct(r.covered, r.total))}  ${r.file}${r.note}`);
    }
  }
}
if (failed) die('a folder is below its line-coverage floor (see above; `npx tap report text` shows the uncovered lines)');
console.log('coverage: all floors met');
