/**
 * The Internet checksum (RFC 1071) and the IPv4/IPv6 pseudo-header sums that TCP, UDP and ICMPv6
 * include. Sums are kept unfolded in a JS number (safe far beyond any frame size) until the end.
 */

/** Adds the 16-bit big-endian words of `data` to `acc` (an odd final byte is padded with zero). */
export function sum16(data: Uint8Array, acc = 0): number {
  let s = acc;
  const n = data.length;
  let i = 0;
  for (; i + 1 < n; i += 2) s += ((data[i] ?? 0) << 8) | (data[i + 1] ?? 0);
  if (i < n) s += (data[i] ?? 0) << 8;
  return s;
}

/** Folds a sum to 16 bits (end-around carry). */
export function fold(sum: number): number {
  let s = sum;
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}

/** The checksum field value: the complement of the folded sum of `data` (+ `acc`). */
export function internetChecksum(data: Uint8Array, acc = 0): number {
  return ~fold(sum16(data, acc)) & 0xffff;
}

/** True if `data` (which contains its own checksum field) sums to 0xffff with `acc` added. */
export function verifyChecksum(data: Uint8Array, acc = 0): boolean {
  return fold(sum16(data, acc)) === 0xffff;
}

/** Pseudo-header sum: source, destination (4 or 16 bytes each), protocol, upper-layer length. */
export function pseudoHeaderSum(src: Uint8Array, dst: Uint8Array, protocol: number, length: number): number {
  // IPv4: zero, protocol, 16-bit length. IPv6: 32-bit length, 24 zero bits, next header.
  // Both reduce to the same 16-bit word sum.
  return sum16(dst, sum16(src)) + protocol + (length & 0xffff) + Math.floor(length / 0x10000);
}
