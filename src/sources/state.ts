/**
 * The admin API's instances on disk, crash-safe: one file per instance,
 * `<state_dir>/instances/<id>.json`, each holding `{"version":1,"instance":{...}}`.
 *
 * A write is: write a temporary file in the same directory, fsync it, rename it over the final
 * name, fsync the directory. A delete is: unlink, fsync the directory. A write is acknowledged
 * only once both fsyncs returned, so after a crash (kill -9, power loss) every acknowledged write
 * is there, and a file under its final name is always a complete one (rename is atomic); a crash
 * mid-write leaves at most a temporary file, which `open()` removes. Writes are serialized: the
 * order on disk is the order of the calls.
 */
import { mkdir, open, readdir, readFile, rename, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export const STATE_VERSION = 1;
/** Ids are 1..128 of A-Z a-z 0-9 . _ : - starting with a letter or digit: safe file names. */
const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const SUFFIX = '.json';

export interface StoredEntry {
  readonly id: string;
  /** The stored instance, as written (validate it again before use). */
  readonly raw: unknown;
}

export interface StateProblem {
  readonly file: string;
  readonly message: string;
}

export class StateStore {
  readonly dir: string;
  private queue: Promise<unknown> = Promise.resolve();
  private seq = 0;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'instances');
  }

  /** Creates the directory, removes leftovers of interrupted writes, reads every stored instance. */
  async open(): Promise<{ entries: StoredEntry[]; problems: StateProblem[] }> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const entries: StoredEntry[] = [];
    const problems: StateProblem[] = [];
    for (const name of (await readdir(this.dir)).sort()) {
      const file = join(this.dir, name);
      if (name.endsWith('.tmp')) {
        await rm(file, { force: true });
        continue;
      }
      if (!name.endsWith(SUFFIX)) continue;
      const id = name.slice(0, -SUFFIX.length);
      let doc: unknown;
      try {
        doc = JSON.parse(await readFile(file, 'utf8'));
      } catch (err) {
        problems.push({ file, message: `not JSON: ${err instanceof Error ? err.message : String(err)}` });
        continue;
      }
      const d = doc as { version?: unknown; instance?: unknown } | null;
      if (typeof d !== 'object' || d === null || d.version !== STATE_VERSION || typeof d.instance !== 'object' || d.instance === null) {
        problems.push({ file, message: `not a version ${STATE_VERSION} instance record` });
        continue;
      }
      entries.push({ id, raw: d.instance });
    }
    return { entries, problems };
  }

  /** Stores `instance` under `id`, durably; resolves once it is on disk. */
  put(id: string, instance: unknown): Promise<void> {
    const text = `${JSON.stringify({ version: STATE_VERSION, instance })}\n`;
    return this.serial(async () => {
      const final = this.fileOf(id);
      const tmp = join(this.dir, `.${id}.${process.pid}.${++this.seq}.tmp`);
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(text);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
      await this.syncDir();
    });
  }

  /** Removes `id`, durably; resolves with whether it was stored. */
  delete(id: string): Promise<boolean> {
    return this.serial(async () => {
      try {
        await unlink(this.fileOf(id));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      }
      await this.syncDir();
      return true;
    });
  }

  private fileOf(id: string): string {
    if (!SAFE_ID.test(id)) throw new Error(`instance id ${JSON.stringify(id)} cannot be a file name`);
    return join(this.dir, id + SUFFIX);
  }

  private async syncDir(): Promise<void> {
    const dh = await open(this.dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }

  /** Runs `fn` after every earlier call finished (whatever their outcome). */
  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
