/**
 * A small kit of composable field checkers. A checker looks at one value at one path; on failure
 * it records problems and returns BAD, so a caller can check every field and report them all.
 * This module imports nothing of ours.
 */

/** One thing wrong with a configuration: where (`instances[0].ports[1].mac`, '' for the root) and why. */
export interface Problem {
  path: string;
  message: string;
}

export const BAD: unique symbol = Symbol('invalid');
export type Bad = typeof BAD;

/** `v` is undefined when the field is absent. Records problems in `out`; returns BAD on failure. */
export type Check<T> = (v: unknown, path: string, out: Problem[]) => T | Bad;

export type Spec = Record<string, Check<unknown>>;
/** What `fields` returns: each field's value, or BAD. */
export type Fields<S extends Spec> = { [K in keyof S]: ReturnType<S[K]> };
/** What `object` returns: every field good. */
export type Good<S extends Spec> = { [K in keyof S]: Exclude<ReturnType<S[K]>, Bad> };

/** `a.b`, `a[0]`, `a["odd key"]`; the root is ''. */
export function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)) return path ? `${path}.${key}` : key;
  return `${path}[${JSON.stringify(key)}]`;
}

/** A value quoted for a one-line message, shortened when long. */
export function q(s: string): string {
  return JSON.stringify(s.length > 64 ? `${s.slice(0, 61)}...` : s);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Date) return 'a date';
  if (typeof v === 'number' || typeof v === 'boolean') return `the ${typeof v} ${String(v)}`;
  if (typeof v === 'string') return `a string (${q(v)})`;
  if (typeof v === 'object') return 'an object';
  return typeof v;
}

export function fail(out: Problem[], path: string, message: string): Bad {
  out.push({ path, message });
  return BAD;
}

/** 'is required' for an absent value, else "expected X, found Y". */
export function wrongType(out: Problem[], path: string, expected: string, v: unknown): Bad {
  if (v === undefined) return fail(out, path, 'is required');
  const hint =
    expected.startsWith('a string') && (typeof v === 'number' || typeof v === 'boolean') ? ' (quote it to make it a string)' : '';
  return fail(out, path, `expected ${expected}, found ${describe(v)}${hint}`);
}

export interface StrRules {
  /** Characters (UTF-16 code units); 1 means "must not be empty". */
  readonly min?: number;
  readonly max?: number;
  /** Upper bound on the UTF-8 encoding. */
  readonly maxBytes?: number;
  /** No line breaks. */
  readonly line?: boolean;
  /** No control characters at all (implies `line`). */
  readonly printable?: boolean;
  readonly pattern?: RegExp;
  /** Completes "<value> is not ...", for `pattern`. */
  readonly what?: string;
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

export const str =
  (r: StrRules = {}): Check<string> =>
  (v, path, out) => {
    if (typeof v !== 'string') return wrongType(out, path, 'a string', v);
    if (r.min !== undefined && v.length < r.min)
      return fail(out, path, r.min === 1 ? 'must not be empty' : `must be at least ${r.min} characters long`);
    if (r.max !== undefined && v.length > r.max) return fail(out, path, `must be at most ${r.max} characters long, found ${v.length}`);
    if (r.maxBytes !== undefined && Buffer.byteLength(v, 'utf8') > r.maxBytes)
      return fail(out, path, `must be at most ${r.maxBytes} bytes (UTF-8), found ${Buffer.byteLength(v, 'utf8')}`);
    if (r.printable && CONTROL.test(v)) return fail(out, path, 'must not contain control characters or line breaks');
    if (r.line && /[\r\n]/.test(v)) return fail(out, path, 'must be a single line');
    if (r.pattern && !r.pattern.test(v)) return fail(out, path, `${q(v)} is not ${r.what ?? `of the form ${String(r.pattern)}`}`);
    return v;
  };

/** A string checked (and normalized) by `parse`, which returns the value or an error message. */
export const fmt =
  (parse: (s: string) => string | { error: string }, base: Check<string> = str()): Check<string> =>
  (v, path, out) => {
    const s = base(v, path, out);
    if (s === BAD) return BAD;
    const r = parse(s);
    return typeof r === 'string' ? r : fail(out, path, r.error);
  };

export const int =
  (min: number, max: number): Check<number> =>
  (v, path, out) => {
    if (typeof v !== 'number') return wrongType(out, path, 'an integer', v);
    if (!Number.isInteger(v)) return fail(out, path, `must be an integer, found ${v}`);
    if (v < min || v > max) return fail(out, path, `must be between ${min} and ${max}, found ${v}`);
    return v;
  };

export const oneOf = <const T extends string>(...values: T[]): Check<T> => {
  const list = values.map((x) => `'${x}'`).join(' or ');
  return (v, path, out) => {
    if (typeof v !== 'string') return wrongType(out, path, list, v);
    return (values as string[]).includes(v) ? (v as T) : fail(out, path, `must be ${list}, found ${q(v)}`);
  };
};

export const arr =
  <T>(item: Check<T>, r: { min?: number } = {}): Check<T[]> =>
  (v, path, out) => {
    if (!Array.isArray(v)) return wrongType(out, path, 'an array', v);
    if (r.min !== undefined && v.length < r.min)
      return fail(out, path, r.min === 1 ? 'must not be empty' : `must have at least ${r.min} entries`);
    const res = v.map((x: unknown, i) => item(x, join(path, i), out));
    return res.some((x) => x === BAD) ? BAD : (res as T[]);
  };

/** A string-keyed map; `key` returns an error message for a bad key, or undefined. */
export const record =
  <T>(key: (k: string) => string | undefined, value: Check<T>): Check<Record<string, T>> =>
  (v, path, out) => {
    if (!isObject(v)) return wrongType(out, path, 'an object', v);
    const n = out.length;
    const entries = Object.entries(v).map(([k, x]): [string, T | Bad] => {
      const err = key(k);
      return [k, err !== undefined ? fail(out, join(path, k), err) : value(x, join(path, k), out)];
    });
    // fromEntries defines own properties, so a "__proto__" key stays a plain key.
    return out.length > n ? BAD : (Object.fromEntries(entries) as Record<string, T>);
  };

/** Checks every field of `spec` and reports fields `spec` does not know; BAD only if `v` is not an object. */
export function fields<S extends Spec>(spec: S, v: unknown, path: string, out: Problem[]): Fields<S> | Bad {
  if (!isObject(v)) return wrongType(out, path, 'an object', v);
  const known = Object.keys(spec);
  for (const k of Object.keys(v)) if (!Object.hasOwn(spec, k)) fail(out, join(path, k), unknownField(k, known));
  const res: Record<string, unknown> = {};
  for (const k of known) res[k] = spec[k]!(Object.hasOwn(v, k) ? v[k] : undefined, join(path, k), out);
  return res as Fields<S>;
}

export function allGood<S extends Spec>(r: Fields<S>): r is Fields<S> & Good<S> {
  return Object.values(r).every((x) => x !== BAD);
}

export const object =
  <S extends Spec>(spec: S): Check<Good<S>> =>
  (v, path, out) => {
    const n = out.length;
    const r = fields(spec, v, path, out);
    return r === BAD || out.length > n || !allGood(r) ? BAD : r;
  };

export const refine =
  <T, U>(c: Check<T>, f: (v: T, path: string, out: Problem[]) => U | Bad): Check<U> =>
  (v, path, out) => {
    const r = c(v, path, out);
    return r === BAD ? BAD : f(r, path, out);
  };

/** Absent stays absent (undefined). */
export const opt =
  <T>(c: Check<T>): Check<T | undefined> =>
  (v, path, out) =>
    v === undefined ? undefined : c(v, path, out);

/** Absent becomes `d`. */
export const def =
  <T>(c: Check<T>, d: T): Check<T> =>
  (v, path, out) =>
    v === undefined ? d : c(v, path, out);

/** An absent object is checked as `{}`, so its fields get their defaults. */
export const orEmpty =
  <T>(c: Check<T>): Check<T> =>
  (v, path, out) =>
    c(v === undefined ? {} : v, path, out);

/** Drops undefined properties, so optional fields are absent rather than undefined. */
export type Compact<T> = { [K in keyof T as undefined extends T[K] ? never : K]: T[K] } & {
  [K in keyof T as undefined extends T[K] ? K : never]?: Exclude<T[K], undefined>;
};
export function compact<T extends object>(o: T): Compact<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Compact<T>;
}

function unknownField(k: string, known: string[]): string {
  const near = known.find((n) => distance(k.toLowerCase(), n) <= Math.min(2, n.length >> 1));
  return near === undefined ? 'unknown field' : `unknown field (did you mean '${near}'?)`;
}

/** Levenshtein distance. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}
