/**
 * The lean HTTP/1.1 path: the few request shapes metadata clients send (one complete `GET`,
 * `HEAD` or body-less `PUT` with plain headers, in one read), parsed without Node's http
 * machinery, and the response written as one string. Anything else — a partial or pipelined
 * request, a body, HTTP/1.0, an unusual header, a byte outside printable ASCII, a request too big
 * — is not parsed here: `parseLean` says undefined and the pipeline hands the connection, bytes
 * included, to Node's http server, which answers or refuses it (400/431/408/505 …) as before.
 *
 * Pure functions of their input and a clock; no I/O.
 */
import { STATUS_CODES } from 'node:http';

export interface LeanRequest {
  readonly method: 'GET' | 'HEAD' | 'PUT';
  /** Percent-decoded path (starts with '/'). */
  readonly path: string;
  /** Raw query without '?', or ''. */
  readonly query: string;
  /** The request target as sent (path and query, not decoded). */
  readonly target: string;
  /** Header names lower-case, values trimmed; no name appears twice. */
  readonly headers: Record<string, string>;
  /** The client asked to close the connection after the response (`Connection: close`). */
  readonly close: boolean;
}

const END = '\r\n\r\n';
/** Printable ASCII, HTAB, CR, LF: anything else goes to the general parser. */
const PLAIN = /^[\t\r\n\x20-\x7e]*$/;
const REQUEST_LINE = /^(GET|HEAD|PUT) (\/[\x21-\x7e]*) HTTP\/1\.1$/;
const HEADER = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+):(.*)$/;
/** The most header lines the lean path takes (Node's maxHeadersCount is 100). */
const MAX_HEADERS = 64;

/**
 * `text` (one read from the socket, latin1) as a lean request, or undefined when it is anything
 * but exactly one complete, plain request of a shape handled here.
 */
export function parseLean(text: string, maxHeaderBytes: number): LeanRequest | undefined {
  if (text.length > maxHeaderBytes || text.indexOf(END) !== text.length - 4 || !PLAIN.test(text)) return undefined;
  const lines = text.slice(0, -4).split('\r\n');
  if (lines.length - 1 > MAX_HEADERS) return undefined;
  const first = REQUEST_LINE.exec(lines[0] ?? '');
  if (first === null) return undefined;
  const method = first[1] as LeanRequest['method'];
  const target = first[2] as string;
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  let close = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    // A bare CR or LF inside a line, or a folded header: the general parser decides.
    if (line.includes('\r') || line.includes('\n')) return undefined;
    const m = HEADER.exec(line);
    if (m === null) return undefined;
    const name = (m[1] as string).toLowerCase();
    // Only space and HTAB can surround a value here (PLAIN): trim() removes exactly the OWS.
    const value = (m[2] as string).trim();
    if (headers[name] !== undefined) return undefined;
    switch (name) {
      case 'content-length':
        if (value !== '0') return undefined;
        break;
      case 'connection': {
        const v = value.toLowerCase();
        if (v === 'close') close = true;
        else if (v !== 'keep-alive') return undefined;
        break;
      }
      case 'transfer-encoding':
      case 'expect':
      case 'upgrade':
      case 'te':
      case 'trailer':
        return undefined;
    }
    headers[name] = value;
  }
  // HTTP/1.1 without Host is refused (400) by the general path.
  if (headers['host'] === undefined) return undefined;
  const q = target.indexOf('?');
  const rawPath = q < 0 ? target : target.slice(0, q);
  let path: string;
  try {
    path = rawPath.includes('%') ? decodeURIComponent(rawPath) : rawPath;
  } catch {
    return undefined;
  }
  if (!path.startsWith('/') || path.includes('\0')) return undefined;
  return { method, path, query: q < 0 ? '' : target.slice(q + 1), target, headers, close };
}

/** The Date header's value, recomputed once a second (as Node's http does). */
export class DateHeader {
  private second = -1;
  private value = '';

  at(now: number): string {
    const s = Math.floor(now / 1000);
    if (s !== this.second) {
      this.second = s;
      this.value = new Date(s * 1000).toUTCString();
    }
    return this.value;
  }
}

/** True when a header value could not be sent as is (it would split the response). */
export function unsafeHeaderValue(v: string): boolean {
  return /[\r\n\0]/.test(v);
}

export interface LeanHead {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly contentLength: number;
  readonly date: string;
  /** Connection: close (forced by the server, or asked by the client). */
  readonly close: boolean;
  /** The server closes regardless of what the client asked (403 and the like): `Connection: close` among its own headers. */
  readonly forced: boolean;
  /** Seconds for `Keep-Alive: timeout=N`; undefined: no Keep-Alive header. */
  readonly keepAliveS: number | undefined;
}

/** The status line, the response's headers and Content-Length: what precedes Date. */
export function leanPrefix(status: number, headers: Readonly<Record<string, string>>, contentLength: number): string {
  let s = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'unknown'}\r\n`;
  for (const name in headers) s += `${name}: ${headers[name] ?? ''}\r\n`;
  return `${s}Content-Length: ${contentLength}\r\n`;
}

/** What follows Date up to the body on a connection that stays open (`keepAliveS` as in LeanHead), or closes. */
export function leanSuffix(close: boolean, keepAliveS: number | undefined): string {
  if (close) return 'Connection: close\r\n\r\n';
  return keepAliveS !== undefined
    ? `Connection: keep-alive\r\nKeep-Alive: timeout=${keepAliveS}\r\n\r\n`
    : 'Connection: keep-alive\r\n\r\n';
}

/** The status line and headers, laid out as Node's http server lays them out for the general path. */
export function leanHead(h: LeanHead): string {
  const prefix = leanPrefix(h.status, h.headers, h.contentLength);
  if (h.forced) return `${prefix}Connection: close\r\nDate: ${h.date}\r\n\r\n`;
  return `${prefix}Date: ${h.date}\r\n${leanSuffix(h.close, h.keepAliveS)}`;
}
