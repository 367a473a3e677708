/**
 * The metadata listeners. Every socket is made by the addon (SO_REUSEADDR + SO_REUSEPORT, and
 * SO_BINDTODEVICE for a per-port one). The first one is the http.Server's own (Node sets up its
 * connection tracking — idle closing, header and request timeouts — only on 'listening'); the
 * others hand their sockets to it through its 'connection' event, so the pipeline sees one server
 * whatever the number of listeners.
 *
 * Per-port listeners keep tenant networks apart in the kernel: two guests on different networks
 * may present the same 4-tuple (same IP, same source port), and the kernel's TCP lookup ignores
 * the mark; a socket bound to the ingress device is found before the unbound one, and its
 * connections only ever match packets from that device.
 *
 * With the native serving loop (`loop`), the loop accepts on every listener instead of Node; the
 * http.Server then only takes the connections the loop hands over, and its connection tracking
 * is started by hand (it starts on 'listening', which a server that never listens would not see).
 */
import net from 'node:net';
import type http from 'node:http';
import type { Logger } from '../model/log.js';
import type { NativeLoop } from '../pipeline/fastpath.js';

export interface ListenTcp {
  listenTcp(address: string, port: number, ifname: string, backlog: number): number;
}

export interface ListenerSpec {
  readonly address: string;
  /** '' for the unbound listener. */
  readonly ifname: string;
}

const keyOf = (s: ListenerSpec): string => `${s.address}%${s.ifname}`;

export class Listeners {
  /** A Node server, or the fd of a listener the native loop accepts on. */
  private readonly servers = new Map<string, net.Server | number>();
  private primary: string | undefined;
  private tracking = false;

  constructor(
    private readonly opts: {
      readonly http: http.Server;
      readonly native: ListenTcp;
      readonly port: number;
      readonly backlog: number;
      readonly log: Logger;
      readonly loop?: Pick<NativeLoop, 'addListener' | 'removeListener'> | undefined;
    },
  ) {}

  /** Opens one listener; rejects when the socket cannot be made (address missing, device gone). */
  open(spec: ListenerSpec): Promise<void> {
    const key = keyOf(spec);
    if (this.servers.has(key)) return Promise.resolve();
    const fd = this.opts.native.listenTcp(spec.address, this.opts.port, spec.ifname, this.opts.backlog);
    const loop = this.opts.loop;
    if (loop !== undefined) {
      loop.addListener(fd);
      this.servers.set(key, fd);
      this.primary ??= key;
      if (!this.tracking) {
        this.tracking = true;
        this.opts.http.emit('listening');
      }
      return Promise.resolve();
    }
    const first = this.primary === undefined;
    const server: net.Server = first ? this.opts.http : net.createServer((socket) => this.opts.http.emit('connection', socket));
    if (first) this.primary = key;
    this.servers.set(key, server);
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => {
        this.servers.delete(key);
        if (this.primary === key) this.primary = undefined;
        reject(err);
      };
      server.once('error', onError);
      server.listen({ fd }, () => {
        server.off('error', onError);
        if (!first) server.on('error', (err) => this.opts.log.error({ err: String(err), listener: key }, 'listener failed'));
        resolve();
      });
    });
  }

  /** Makes the per-port listeners exactly `wanted` (unbound ones are left alone). */
  async sync(wanted: readonly ListenerSpec[]): Promise<void> {
    const keep = new Set(wanted.map(keyOf));
    for (const [key, server] of this.servers) {
      if (key !== this.primary && !key.endsWith('%') && !keep.has(key)) {
        this.servers.delete(key);
        this.stop(server);
      }
    }
    for (const spec of wanted) {
      await this.open(spec).catch((err: unknown) => {
        this.opts.log.warn({ err: String(err), address: spec.address, ifname: spec.ifname }, 'cannot open a per-port listener');
      });
    }
  }

  get size(): number {
    return this.servers.size;
  }

  /** Stops accepting on every listener. */
  close(): void {
    for (const s of this.servers.values()) this.stop(s);
    this.servers.clear();
    if (this.tracking) this.opts.http.close();
  }

  private stop(s: net.Server | number): void {
    if (typeof s === 'number') this.opts.loop?.removeListener(s);
    else s.close();
  }
}
