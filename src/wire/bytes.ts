/**
 * Bounds-checked big-endian readers over a byte array: undefined instead of an exception or a
 * silent NaN when a read would leave the array. The "view" layer is built on these.
 */
export function u8(b: Uint8Array, off: number): number | undefined {
  return Number.isInteger(off) && off >= 0 ? b[off] : undefined;
}

export function u16(b: Uint8Array, off: number): number | undefined {
  if (!Number.isInteger(off) || off < 0 || off + 2 > b.length) return undefined;
  const hi = b[off];
  const lo = b[off + 1];
  return hi === undefined || lo === undefined ? undefined : (hi << 8) | lo;
}

export function u32(b: Uint8Array, off: number): number | undefined {
  const hi = u16(b, off);
  const lo = u16(b, off + 2);
  return hi === undefined || lo === undefined ? undefined : hi * 0x10000 + lo;
}

/** A sub-view (no copy) of `len` bytes at `off`, or undefined if it does not fit. */
export function slice(b: Uint8Array, off: number, len: number): Uint8Array | undefined {
  if (!Number.isInteger(off) || !Number.isInteger(len) || off < 0 || len < 0 || off + len > b.length) {
    return undefined;
  }
  return b.subarray(off, off + len);
}

/** A Buffer sharing memory with `b` (no copy). */
export function asBuffer(b: Uint8Array): Buffer {
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
}

/** `into` if it is large enough (the first `len` bytes of it), else a fresh zeroed Buffer. */
export function outBuffer(len: number, into?: Uint8Array): Buffer {
  if (into === undefined) return Buffer.alloc(len);
  if (into.length < len) throw new RangeError(`emit: buffer of ${into.length} bytes, need ${len}`);
  const out = asBuffer(into).subarray(0, len);
  out.fill(0);
  return out;
}

export function put16(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 8) & 0xff;
  b[off + 1] = v & 0xff;
}

export function put32(b: Uint8Array, off: number, v: number): void {
  b[off] = (v >>> 24) & 0xff;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

export function checkUint(name: string, v: number, bits: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 2 ** bits - 1) throw new RangeError(`emit: ${name} ${v} is not a u${bits}`);
}
