/** The machine a run was made on, and small numeric helpers shared by the benchmarks. */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { cpus, release } from 'node:os';
import { repoRoot } from '../../src/lab/daemon.js';

export { repoRoot };

export interface MachineInfo {
  readonly nproc: number;
  readonly cpu: string;
  readonly kernel: string;
  readonly node: string;
  readonly commit: string;
  readonly dirty: boolean;
  readonly date: string;
  readonly mem_mb: number;
}

export function machineInfo(): MachineInfo {
  let commit = 'unknown';
  let dirty = false;
  try {
    commit = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: repoRoot(), encoding: 'utf8' }).trim();
    dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: repoRoot(), encoding: 'utf8' }).trim() !== '';
  } catch {
    /* not a git checkout */
  }
  let memMb = 0;
  try {
    const m = /MemTotal:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'));
    memMb = m ? Math.round(Number(m[1]) / 1024) : 0;
  } catch {
    /* no /proc */
  }
  return {
    nproc: cpus().length,
    cpu: cpus()[0]?.model.trim() ?? 'unknown',
    kernel: release(),
    node: process.version,
    commit,
    dirty,
    date: new Date().toISOString(),
    mem_mb: memMb,
  };
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** The p-th percentile (0..100) of sorted values, nearest rank. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * (sorted.length - 1))));
  return sorted[i] as number;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
