/**
 * A typed wrapper over the `cap` npm package (libpcap), which ships no types. Loaded lazily so
 * that importing the packet layer does not require the native module until a capture opens.
 */
import { createRequire } from 'node:module';

/** One libpcap handle: capture with a BPF filter, and send raw frames on the same device. */
export interface CapHandle {
  /**
   * Opens `device` (promiscuous, immediate mode, non-blocking) with the BPF `filter`; `buffer`
   * receives each frame before its 'packet' event. Returns the link type, e.g. "ETHERNET".
   */
  open(device: string, filter: string, bufSize: number, buffer: Buffer): string;
  close(): void;
  /** Sends `buffer` (its first `nBytes`) as one raw frame; throws on pcap_sendpacket failure. */
  send(buffer: Buffer, nBytes?: number): void;
  on(event: 'packet', listener: (nbytes: number, truncated: boolean) => void): this;
  removeAllListeners(event?: string): this;
}

export interface CapModule {
  readonly Cap: new () => CapHandle;
}

let cached: CapModule | undefined;

export function loadCap(): CapModule {
  if (cached === undefined) {
    const require = createRequire(import.meta.url);
    cached = require('cap') as CapModule;
  }
  return cached;
}
