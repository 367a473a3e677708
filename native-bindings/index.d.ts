// Types for native-bindings/index.cjs (the linkgate_native N-API addon).
// Errors from a syscall are `NativeSocketError`s; bad arguments throw TypeError/RangeError
// with code 'ERR_INVALID_ARG_TYPE' / 'ERR_OUT_OF_RANGE'.

export interface NativeSocketError extends Error {
  /** errno name, e.g. 'EBADF', 'ENOTSOCK' */
  code: string;
  /** negative errno, as in Node's own system errors */
  errno: number;
  /** 'getsockopt' | 'setsockopt' */
  syscall: string;
}

/** getsockopt(fd, SOL_SOCKET, SO_MARK): the socket's fwmark, an unsigned 32-bit integer. */
export declare function getMark(fd: number): number;
/**
 * setsockopt(fd, IPPROTO_IP, IP_TTL, ttl), or IPV6_UNICAST_HOPS on an IPv6 socket; ttl in 1..255
 * (-1 on IPv6: back to the route's default).
 */
export declare function setIpTtl(fd: number, ttl: number): void;
/** getsockopt(fd, IPPROTO_IP, IP_TTL), or IPV6_UNICAST_HOPS on an IPv6 socket (-1: the route's default). */
export declare function getIpTtl(fd: number): number;
/**
 * A listening TCP socket on address:port with SO_REUSEADDR and SO_REUSEPORT, bound to `ifname`
 * with SO_BINDTODEVICE unless it is ''. Returns the non-blocking fd, for server.listen({ fd }).
 */
export declare function listenTcp(address: string, port: number, ifname: string, backlog: number): number;

// The native serving loop (src/fastpath.cc): its options, counts and methods are the pipeline's
// NativeLoop contract (src/pipeline/fastpath.ts), which documents them.
import type { NativeLoop, NativeLoopOptions, NativeLoopStats } from '../src/pipeline/fastpath.js';

export type FastPathOptions = NativeLoopOptions;
export type FastPathStats = NativeLoopStats;
export declare const FastPath: new (options: FastPathOptions) => NativeLoop;

/** What the loop makes of one request (tests compare it with src/pipeline/fastpath.ts). */
export declare function parseFastPath(
  request: Buffer,
  maxHeaderBytes: number,
): { length: number; target: string; flags: number; close: boolean; token?: string } | undefined;
