/**
 * Reading a configuration file: `.json` with JSON.parse, anything else as YAML 1.2, then
 * validateConfig. Syntax errors come back as problems at the root, with line and column.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { Problem } from './checks.js';
import { validateConfig, type ConfigResult, type RawInstances } from './validate.js';

type Parsed = { ok: true; value: unknown } | { ok: false; problems: Problem[] };

const root = (message: string): Problem => ({ path: '', message: message.split('\n')[0]! });

export function loadConfigFile(file: string, opts: { hostname?: string } = {}): ConfigResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (e) {
    return { ok: false, problems: [root(`cannot read the configuration file: ${(e as Error).message}`)] };
  }
  const json = extname(file).toLowerCase() === '.json';
  if (json) {
    const split = splitInstances(text);
    if (split) return validateConfig(split.top, { ...opts, instances: split.instances });
  }
  const parsed = json ? parseJson(text) : parseYaml(text);
  return parsed.ok ? validateConfig(parsed.value, opts) : parsed;
}

/** One line per problem: `<path>: <message>`, `(root)` for the root. */
export function formatProblems(problems: readonly Problem[]): string {
  return problems.map((p) => `${p.path || '(root)'}: ${p.message}`).join('\n');
}

/** YAML syntax errors (and duplicate keys), each with its line and column. */
function yamlErrors(text: string): { errors: Problem[]; value: () => unknown } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  const errors = doc.errors.map((e) => {
    const at = lines.linePos(e.pos[0]);
    return root(`${e.code === 'DUPLICATE_KEY' ? 'duplicate key' : 'YAML syntax error'} at line ${at.line}, column ${at.col}: ${e.message}`);
  });
  return { errors, value: (): unknown => doc.toJS({ maxAliasCount: 100 }) };
}

function parseYaml(text: string): Parsed {
  const { errors, value } = yamlErrors(text);
  if (errors.length > 0) return { ok: false, problems: errors };
  try {
    return { ok: true, value: value() };
  } catch (e) {
    // toJS throws on alias bombs ("Excessive alias count...").
    return { ok: false, problems: [root(`YAML error: ${(e as Error).message}`)] };
  }
}

function parseJson(text: string): Parsed {
  try {
    const value: unknown = JSON.parse(text);
    // JSON.parse keeps the last of duplicate keys silently: find them (a token scan; the YAML
    // parser would do it too, but costs seconds and a gigabyte on a 100,000-instance file).
    const dups = jsonDuplicateKeys(text);
    return dups.length > 0 ? { ok: false, problems: dups } : { ok: true, value };
  } catch (e) {
    const at = jsonErrorOffset(text);
    const lines = text.slice(0, at).split('\n');
    const where = at === undefined ? '' : ` at line ${lines.length}, column ${lines.at(-1)!.length + 1}`;
    return { ok: false, problems: [root(`invalid JSON${where}: ${(e as Error).message.replace(/\s+/g, ' ')}`)] };
  }
}

const TOKEN =
  /[ \t\n\r]*(?:("(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")|(-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)|([{}[\],:]))?/y;

function lineCol(s: string, at: number): string {
  const lines = s.slice(0, at).split('\n');
  return `line ${lines.length}, column ${lines.at(-1)!.length + 1}`;
}

/** Duplicate keys in (valid) JSON text, each with its line and column. */
function jsonDuplicateKeys(s: string): Problem[] {
  const out: Problem[] = [];
  // Per open container: its keys when it is an object, and whether a key comes next.
  const stack: { keys: Set<string> | undefined; keyNext: boolean }[] = [];
  TOKEN.lastIndex = 0;
  for (let i = 0; i < s.length;) {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(s)!;
    if (m[0].length === 0) break;
    i = TOKEN.lastIndex;
    const top = stack.at(-1);
    if (m[1] !== undefined && top?.keys && top.keyNext) {
      const key = JSON.parse(m[1]) as string;
      if (top.keys.has(key)) out.push(root(`duplicate key at ${lineCol(s, i - m[1].length)}: ${m[1]}`));
      top.keys.add(key);
      top.keyNext = false;
    } else if (m[3] === '{') stack.push({ keys: new Set(), keyNext: true });
    else if (m[3] === '[') stack.push({ keys: undefined, keyNext: false });
    else if (m[3] === '}' || m[3] === ']') stack.pop();
    else if (m[3] === ',' && top?.keys) top.keyNext = true;
  }
  return out;
}

/**
 * The usual shape of a big file, an object with an `instances` array, read without building the
 * whole tree at once: the rest of the document in one JSON.parse, each instance in its own when
 * validation reaches it. Each instance's parsed form is then garbage as soon as it is validated,
 * instead of all of them living (hundreds of MB at 100,000 instances) until the last is checked,
 * with the strings the validated instances keep scattered through their pages afterwards.
 *
 * Undefined for anything else, any syntax error and any duplicate key included (one scan checks
 * the whole text as strictly as JSON.parse): the caller then parses the text whole and reports
 * exactly as before.
 */
function splitInstances(s: string): { top: unknown; instances: RawInstances } | undefined {
  let i = 0;
  /** The current token: where its text starts and ends, its kind, its text when a string. */
  let at = 0;
  let end = 0;
  let tok = '';
  let str = '';
  /** End of the last token consumed. */
  let last = 0;
  const next = (): void => {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(s)!; // cannot fail: every part is optional
    const body = m[1] ?? m[2] ?? m[3] ?? '';
    end = TOKEN.lastIndex;
    at = end - body.length;
    i = end;
    str = m[1] ?? '';
    tok = m[1] !== undefined ? 'string' : m[2] !== undefined ? 'scalar' : (m[3] ?? (at >= s.length ? 'end' : 'junk'));
  };
  /** The current token is a `t` (a function: TypeScript would narrow `tok` across the calls that move it). */
  const is = (t: string): boolean => tok === t;
  const eat = (t: string): boolean => {
    if (!is(t)) return false;
    last = end;
    next();
    return true;
  };
  let arrayAt = -1;
  let arrayEnd = -1;
  const starts: number[] = [];
  const ends: number[] = [];

  const value = (): boolean => {
    if (eat('string') || eat('scalar')) return true;
    if (is('{')) return object(false);
    if (!eat('[')) return false;
    if (eat(']')) return true;
    do if (!value()) return false;
    while (eat(','));
    return eat(']');
  };
  /** Members; at the root, `instances` (an array) is recorded element by element instead. */
  const object = (root: boolean): boolean => {
    eat('{');
    if (eat('}')) return true;
    const keys = new Set<string>();
    do {
      if (!is('string')) return false;
      const key = str.includes('\\') ? (JSON.parse(str) as string) : str.slice(1, -1);
      if (keys.has(key)) return false;
      keys.add(key);
      eat('string');
      if (!eat(':')) return false;
      if (root && key === 'instances' && is('[')) {
        arrayAt = at;
        eat('[');
        if (!eat(']')) {
          do {
            starts.push(at);
            if (!value()) return false;
            ends.push(last);
          } while (eat(','));
          if (!eat(']')) return false;
        }
        arrayEnd = last;
      } else if (!value()) return false;
    } while (eat(','));
    return eat('}');
  };

  try {
    next();
    if (!is('{') || !object(true) || !is('end') || arrayAt < 0) return undefined;
    const top: unknown = JSON.parse(`${s.slice(0, arrayAt)}[]${s.slice(arrayEnd)}`);
    return { top, instances: { length: starts.length, get: (k) => JSON.parse(s.slice(starts[k], ends[k])) as unknown } };
  } catch {
    return undefined; // nested too deep for recursion: parsed whole
  }
}

/**
 * Where JSON text first goes wrong (V8's messages do not always say): a small recursive-descent
 * recognizer over TOKEN. Undefined if it finds nothing wrong.
 */
function jsonErrorOffset(s: string): number | undefined {
  let i = 0;
  let at = 0;
  let tok = '';
  const next = (): void => {
    TOKEN.lastIndex = i;
    const m = TOKEN.exec(s)!; // cannot fail: every part is optional
    const body = m[1] ?? m[2] ?? m[3] ?? '';
    at = i + m[0].length - body.length;
    i = TOKEN.lastIndex;
    tok = m[1] !== undefined ? 'string' : m[2] !== undefined ? 'scalar' : (m[3] ?? (at >= s.length ? 'end' : 'junk'));
  };
  /** Consumes the current token if it is `t`. */
  const eat = (t: string): boolean => (tok === t ? (next(), true) : false);
  const value = (): boolean => {
    if (eat('string') || eat('scalar')) return true;
    const close = eat('{') ? '}' : eat('[') ? ']' : undefined;
    if (close === undefined) return false;
    if (eat(close)) return true;
    do {
      if (close === '}' && !(eat('string') && eat(':'))) return false;
      if (!value()) return false;
    } while (eat(','));
    return eat(close);
  };
  try {
    next();
    return value() && eat('end') ? undefined : at;
  } catch {
    return undefined; // nested too deep for recursion
  }
}
