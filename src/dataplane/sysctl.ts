/** sysctls of the daemon's network namespace (read and written through /proc/sys). */
import { readFile, writeFile } from 'node:fs/promises';

/** A sysctl as path segments, e.g. ['net', 'ipv4', 'conf', 'tap1', 'src_valid_mark'] (interface names may hold dots). */
export type SysctlName = readonly string[];

function pathOf(name: SysctlName): string {
  if (name.some((seg) => seg === '' || seg === '.' || seg === '..' || seg.includes('/'))) {
    throw new Error(`bad sysctl name: ${name.join('.')}`);
  }
  return `/proc/sys/${name.join('/')}`;
}

export async function readSysctl(name: SysctlName): Promise<string> {
  return (await readFile(pathOf(name), 'utf8')).trim();
}

/** Writes `value`; returns the value it had before. */
export async function writeSysctl(name: SysctlName, value: string): Promise<string> {
  const before = await readSysctl(name);
  if (before !== value) await writeFile(pathOf(name), value);
  return before;
}
