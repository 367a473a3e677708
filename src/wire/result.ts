/**
 * Results of the wire layer's parsers: a value, or the reason the bytes were refused.
 * Parsers never throw on bad input; emitters throw RangeError only on an invalid repr
 * (a programming error, never guest input).
 */
export type WireError =
  /** Fewer bytes than the header (or a length field) says. */
  | 'truncated'
  /** A checksum did not verify. */
  | 'bad-checksum'
  /** A version field is not the one this parser reads. */
  | 'bad-version'
  /** A length field contradicts itself or the buffer (e.g. IHL < 5, TCP data offset < 5). */
  | 'bad-length'
  /** An option (IPv4/TCP/NDP) runs past its area or has an illegal length. */
  | 'bad-option'
  /** Well-formed, but a kind this layer does not read (e.g. ARP over non-Ethernet, >2 VLAN tags). */
  | 'unsupported'
  /** Other semantic violations (e.g. NDP with a multicast target). */
  | 'malformed';

export type Parsed<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: WireError };

export const ok = <T>(value: T): Parsed<T> => ({ ok: true, value });
export const fail = <T = never>(error: WireError): Parsed<T> => ({ ok: false, error });
