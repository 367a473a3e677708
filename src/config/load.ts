/**
 * Reading a configuration file: `.json` with JSON.parse, anything else as YAML 1.2, then
 * validateConfig. Syntax errors come back as problems at the root, with line and column.
 */
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import type { Problem } from './checks.js';
import { validateConfig, type ConfigResult } from './validate.js';

type Parsed = { ok: true; value: unknown } | { ok: false; problems: Problem[] };

const root = (message: string): Problem => ({ path: '', message: message.split('\n')[0]! });

export function loadConfigFile(file: string, opts: { hostname?: string } = {}): ConfigResult {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (e) {
    return { ok: false, problems: [root(`cannot read the configuration file: ${(e as Error).message}`)] };
  }
  const parsed = extname(file).toLowerCase() === '.json' ? parseJson(text) : parseYaml(text);
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
