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

export interface FastPathOptions {
  /**
   * Called on the JavaScript thread when the loop gives a connection up: JavaScript owns `fd`
   * from then on. `state`: bit 1 its mark was unbound since it was accepted (stale), bit 2 close
   * once `out` is written. `out`: bytes of an answer
   * still to write, before anything else; `rest`: bytes already read, to parse first.
   */
  handoff(fd: number, mark: number, state: number, out: Buffer | undefined, rest: Buffer | undefined): void;
  maxHeaderBytes: number;
  /** Nothing answered within this time of accepting: `timeoutResponse`, then closed (0: never). */
  headerTimeoutMs: number;
  /** Idle this long after an answer: closed (0: never). */
  keepAliveTimeoutMs: number;
  /** Appended after the Date header when the connection stays open / closes; each ends with the blank line. */
  keepAliveSuffix: string;
  closeSuffix: string;
  timeoutResponse: string;
  /** Bytes of answers the cache may hold. */
  cacheBytes: number;
}

export interface FastPathStats {
  accepted: number;
  answered: number;
  handedOff: number;
  adopted: number;
  timedOut: number;
  open: number;
  entries: number;
  cacheBytes: number;
}

/** The native serving loop (src/fastpath.cc): its own thread and epoll. */
export declare class FastPath {
  constructor(options: FastPathOptions);
  /** The loop accepts on `fd` from now on (and closes it on removeListener/stop/close). */
  addListener(fd: number): void;
  removeListener(fd: number): void;
  /**
   * The answer to `GET target` with header flags `flags` on a connection marked `mark`: `head` is
   * the status line and headers up to Content-Length (the loop adds Date and Connection). False
   * when over the cache budget.
   */
  put(mark: number, flags: number, target: string, head: string, body: Buffer): boolean;
  /**
   * Forgets the answers of `unbound` and `drop` marks (every answer when `drop` is absent);
   * connections of `unbound` marks go to JavaScript (stale) on their next request.
   */
  change(unbound: readonly number[], drop?: readonly number[]): void;
  /** Takes a duplicate of an idle keep-alive connection's fd (the caller closes its own); false if not taken. */
  adopt(fd: number, mark: number): boolean;
  /** Stops accepting; idle connections closed, those with bytes waiting handed over. */
  stop(): void;
  /** Ends the thread. */
  close(): void;
  stats(): FastPathStats;
}

/** What the loop makes of one request (tests compare it with src/pipeline/fastpath.ts). */
export declare function parseFastPath(
  request: Buffer,
  maxHeaderBytes: number,
): { length: number; target: string; flags: number; close: boolean } | undefined;
