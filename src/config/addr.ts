/**
 * Address and name syntax: MAC, IPv4, IPv6 (with an RFC 5952 normalizer), interface names,
 * hostnames, ISO-8601 date-times. Each `check*` returns the normalized value or `{ error }`.
 * This module imports nothing of ours.
 */

export type Checked = string | { error: string };

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

export function checkMac(s: string): Checked {
  if (!MAC.test(s)) return { error: `${JSON.stringify(s)} is not a MAC address of the form xx:xx:xx:xx:xx:xx` };
  const mac = s.toLowerCase();
  if (mac === '00:00:00:00:00:00') return { error: 'must not be all zeros' };
  if (parseInt(mac.slice(0, 2), 16) & 1) return { error: `${mac} is a multicast address; a NIC's MAC must be unicast` };
  return mac;
}

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** Dotted quad, no leading zeros; the four octets, or undefined. */
export function parseIPv4(s: string): [number, number, number, number] | undefined {
  const parts = s.split('.');
  if (parts.length !== 4 || !parts.every((p) => OCTET.test(p) && Number(p) <= 255)) return undefined;
  return parts.map(Number) as [number, number, number, number];
}

/** An address a guest may own: not 0/8, 127/8, 224/4 and above (multicast, reserved, broadcast). */
export function checkGuestIPv4(s: string): Checked {
  const o = parseIPv4(s);
  if (!o) return { error: `${JSON.stringify(s)} is not a dotted-quad IPv4 address (no leading zeros)` };
  if (o[0] === 0) return { error: `${s} is in 0.0.0.0/8 ("this network"), not a usable address` };
  if (o[0] === 127) return { error: `${s} is a loopback address` };
  if (o[0] >= 224) return { error: `${s} is ${o[0] < 240 ? 'a multicast' : 'a reserved or broadcast'} address` };
  return s;
}

/** The eight 16-bit groups, or undefined. Accepts `::` and a trailing dotted quad; no zone ids. */
export function parseIPv6(s: string): number[] | undefined {
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const groups = (h: string, last: boolean): number[] | undefined => {
    if (h === '') return [];
    const out: number[] = [];
    const pieces = h.split(':');
    for (const [i, p] of pieces.entries()) {
      if (/^[0-9a-f]{1,4}$/i.test(p)) out.push(parseInt(p, 16));
      else if (last && i === pieces.length - 1 && parseIPv4(p)) {
        const [a, b, c, d] = parseIPv4(p)!;
        out.push((a << 8) | b, (c << 8) | d);
      } else return undefined;
    }
    return out;
  };
  const head = groups(halves[0]!, halves.length === 1);
  if (!head) return undefined;
  if (halves.length === 1) return head.length === 8 ? head : undefined;
  const tail = groups(halves[1]!, true);
  if (!tail || head.length + tail.length > 7) return undefined;
  return [...head, ...Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/** RFC 5952 text: lower case, no leading zeros, the longest (first) run of 2+ zero groups as `::`. */
export function formatIPv6(g: readonly number[]): string {
  let start = -1;
  let len = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > len) [start, len] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = g.map((x) => x.toString(16));
  if (start < 0) return hex.join(':');
  return `${hex.slice(0, start).join(':')}::${hex.slice(start + len).join(':')}`;
}

export function normalizeIPv6(s: string): string | undefined {
  const g = parseIPv6(s);
  return g && formatIPv6(g);
}

/** An address a guest may own: not unspecified, loopback, multicast or IPv4-mapped. */
export function checkGuestIPv6(s: string): Checked {
  const g = parseIPv6(s);
  if (!g) return { error: `${JSON.stringify(s)} is not an IPv6 address` };
  const text = formatIPv6(g);
  if (text === '::') return { error: 'must not be the unspecified address ::' };
  if (text === '::1') return { error: 'must not be the loopback address ::1' };
  if (g[0]! >> 8 === 0xff) return { error: `${text} is a multicast address` };
  if (g.slice(0, 5).every((x) => x === 0) && g[5] === 0xffff)
    return { error: `${text} is an IPv4-mapped address; give the IPv4 address as ipv4` };
  return text;
}

/** Linux's dev_valid_name: 1..15 bytes, not '.' or '..', no '/', ':' or whitespace. */
export function checkIfname(s: string): Checked {
  if (s.length === 0 || Buffer.byteLength(s) > 15) return { error: 'must be 1 to 15 characters long (a Linux interface name)' };
  if (s === '.' || s === '..') return { error: `${JSON.stringify(s)} is not a valid interface name` };
  if (/[/:\s\u0000-\u001f\u007f]/.test(s)) return { error: 'must not contain "/", ":", whitespace or control characters' };
  return s;
}

const LABEL = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

/** RFC 1123 host name: dot-separated labels of 1..63 letters, digits and inner hyphens; ≤ 253 in all. */
export function checkHostname(s: string): Checked {
  if (s === '') return { error: 'must not be empty' };
  if (s.length > 253) return { error: `must be at most 253 characters long, found ${s.length}` };
  const bad = s.split('.').find((l) => !LABEL.test(l));
  if (bad === undefined) return s;
  const why = bad === '' ? 'an empty label' : bad.length > 63 ? 'a label longer than 63 characters' : `the label ${JSON.stringify(bad)}`;
  return {
    error: `${JSON.stringify(s.length > 64 ? `${s.slice(0, 61)}...` : s)} is not an RFC 1123 host name (${why}; labels are letters, digits and inner hyphens)`,
  };
}

const ISO = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,]\d+)?(Z|([+-])(\d{2}):?(\d{2}))$/i;

/** An ISO-8601 date-time with a time zone, as `YYYY-MM-DDTHH:MM:SSZ` (fractions dropped). */
export function checkDateTime(v: string | Date): Checked {
  let ms: number;
  if (v instanceof Date) ms = v.getTime();
  else {
    const m = ISO.exec(v);
    if (!m) {
      const hint = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?$/i.test(v) ? ' with a time zone (Z or ±hh:mm)' : '';
      return { error: `${JSON.stringify(v)} is not an ISO-8601 date-time${hint}, e.g. 2030-01-01T00:00:00Z` };
    }
    const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
    const [oh, om] = [Number(m[9] ?? 0), Number(m[10] ?? 0)];
    const day = new Date(0);
    day.setUTCFullYear(y, mo - 1, d); // not Date.UTC: it maps years 0..99 to 1900..1999
    if (mo < 1 || mo > 12 || day.getUTCDate() !== d || h > 23 || mi > 59 || sec > 59 || oh > 23 || om > 59)
      return { error: `${JSON.stringify(v)} is not a valid date-time (a field is out of range)` };
    ms = day.getTime() + ((h * 60 + mi) * 60 + sec) * 1000 - (m[8] === '-' ? -1 : 1) * (oh * 60 + om) * 60_000;
  }
  const out = Number.isNaN(ms) ? '' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(out)) return { error: 'is not a valid date-time between years 0000 and 9999' };
  return out;
}
