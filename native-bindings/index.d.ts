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
/** setsockopt(fd, IPPROTO_IP, IP_TTL, ttl); ttl must be an integer in 1..255. */
export declare function setIpTtl(fd: number, ttl: number): void;
/** getsockopt(fd, IPPROTO_IP, IP_TTL). */
export declare function getIpTtl(fd: number): number;
