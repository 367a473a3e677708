/**
 * rtnetlink, through the `netlink` package: links (and their events), the daemon's routes,
 * policy rules and its address. Everything the daemon installs is tagged so that a later run
 * can find it again (routes and rules by protocol number, the address by its label).
 */
import { createRtNetlink, FlagsNew, type RtNetlinkSocket } from 'netlink';
import { ipv4ToBuffer } from './addr.js';

/** rtm_protocol / FRA_PROTOCOL of everything linkgate installs ("lg" = 0x6c67 is too wide: one byte). */
export const RT_PROTO_LINKGATE = 0xa9;
const AF_INET = 2;
const CREATE_REPLACE = FlagsNew.CREATE | FlagsNew.REPLACE;
const TIMEOUT = { timeout: 5000 };

export interface LinkInfo {
  readonly index: number;
  readonly name: string;
  readonly up: boolean;
}

/** A rtnetlink request socket, plus (on demand) a second one subscribed to link events. */
export class Rtnl {
  private readonly req: RtNetlinkSocket;
  private events: RtNetlinkSocket | undefined;

  constructor() {
    this.req = createRtNetlink();
  }

  /**
   * Calls `onChange` whenever a link appears, changes or disappears (RTNLGRP_LINK). The package
   * folds RTM_NEWLINK and RTM_DELLINK into one message kind, so callers re-read `links()`.
   */
  watchLinks(onChange: () => void, onError: (err: Error) => void): void {
    if (this.events) return;
    const sock = createRtNetlink();
    sock.addMembership('LINK');
    sock.on('message', (msgs) => {
      if (msgs.some((m) => m.kind === 'link')) onChange();
    });
    sock.socket.on('error', onError);
    sock.socket.ref(true);
    this.events = sock;
  }

  async links(): Promise<Map<string, LinkInfo>> {
    const out = new Map<string, LinkInfo>();
    for (const m of await this.req.getLinks(undefined, undefined, TIMEOUT)) {
      const name = m.attrs.ifname;
      const index = m.data.index;
      if (name === undefined || index === undefined) continue;
      out.set(name, { index, name, up: Boolean(m.data.flags?.up) });
    }
    return out;
  }

  /** A /32 route to a guest via its port, in `table`, tagged as ours. */
  async addHostRoute(table: number, ipv4: string, ifindex: number): Promise<void> {
    await this.req.newRoute(
      { family: AF_INET, dstLen: 32, table: table < 256 ? table : 0, protocol: RT_PROTO_LINKGATE as never, scope: 'LINK', type: 'UNICAST' },
      { dst: ipv4ToBuffer(ipv4), oif: ifindex, table },
      { flags: CREATE_REPLACE, ...TIMEOUT },
    );
  }

  async delHostRoute(table: number, ipv4: string, ifindex: number): Promise<void> {
    await this.req.delRoute(
      { family: AF_INET, dstLen: 32, table: table < 256 ? table : 0, protocol: RT_PROTO_LINKGATE as never, scope: 'LINK', type: 'UNICAST' },
      { dst: ipv4ToBuffer(ipv4), oif: ifindex, table },
      TIMEOUT,
    );
  }

  /** Every IPv4 route tagged as ours, in any table. */
  async ownRoutes(): Promise<{ table: number; dst: string; oif: number | undefined }[]> {
    const out: { table: number; dst: string; oif: number | undefined }[] = [];
    for (const m of await this.req.getRoutes({ family: AF_INET }, undefined, TIMEOUT)) {
      if (Number(m.data.protocol) !== RT_PROTO_LINKGATE) continue;
      const table = m.attrs.table ?? m.data.table ?? 0;
      const dst = m.attrs.dst ? [...m.attrs.dst].join('.') : '0.0.0.0';
      out.push({ table, dst, oif: m.attrs.oif });
    }
    return out;
  }

  async flushOwnRoutes(): Promise<number> {
    let n = 0;
    for (const r of await this.ownRoutes()) {
      await this.req
        .delRoute(
          // Scope NOWHERE matches a route of any scope on delete.
          { family: AF_INET, dstLen: 32, table: r.table < 256 ? r.table : 0, protocol: RT_PROTO_LINKGATE as never, scope: 'NOWHERE' },
          { dst: ipv4ToBuffer(r.dst), table: r.table, ...(r.oif !== undefined ? { oif: r.oif } : {}) },
          TIMEOUT,
        )
        .then(() => n++, ignoreMissing);
    }
    return n;
  }

  /** `ip rule add fwmark MARK/MASK lookup TABLE pref PREF proto linkgate` */
  async addFwmarkRule(pref: number, mark: number, mask: number, table: number): Promise<void> {
    await this.req.newRule(
      { family: AF_INET, table: table < 256 ? table : 0, action: 'toTbl' },
      { priority: pref, fwmark: mark, fwmask: mask, table, protocol: RT_PROTO_LINKGATE },
      { flags: FlagsNew.CREATE | FlagsNew.EXCL, ...TIMEOUT },
    );
  }

  async ownRules(): Promise<{ pref: number; fwmark: number; fwmask: number; table: number }[]> {
    const out: { pref: number; fwmark: number; fwmask: number; table: number }[] = [];
    for (const m of await this.req.getRules({ family: AF_INET }, undefined, TIMEOUT)) {
      if (m.attrs.protocol !== RT_PROTO_LINKGATE) continue;
      out.push({
        pref: m.attrs.priority ?? 0,
        fwmark: m.attrs.fwmark ?? 0,
        fwmask: m.attrs.fwmask ?? 0xffffffff,
        table: m.attrs.table ?? m.data.table ?? 0,
      });
    }
    return out;
  }

  async flushOwnRules(): Promise<number> {
    let n = 0;
    for (const r of await this.ownRules()) {
      await this.req
        .delRule(
          { family: AF_INET, table: r.table < 256 ? r.table : 0, action: 'toTbl' },
          { priority: r.pref, fwmark: r.fwmark, fwmask: r.fwmask, table: r.table, protocol: RT_PROTO_LINKGATE },
          TIMEOUT,
        )
        .then(() => n++, ignoreMissing);
    }
    return n;
  }

  /** IPv4 addresses on a link: address → label. */
  async addresses(ifindex: number): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const m of await this.req.getAddresses({ family: AF_INET }, undefined, TIMEOUT)) {
      if (m.data.index !== ifindex || !m.attrs.local) continue;
      out.set([...m.attrs.local].join('.'), m.attrs.label ?? '');
    }
    return out;
  }

  /** Adds addr/32 (scope global) with `label` on the link, replacing an equal one. */
  async addAddress(ifindex: number, ipv4: string, label: string): Promise<void> {
    const ip = ipv4ToBuffer(ipv4);
    await this.req.newAddress(
      { family: AF_INET, prefixlen: 32, scope: 0, index: ifindex },
      { local: ip, address: ip, label },
      { flags: CREATE_REPLACE, ...TIMEOUT },
    );
  }

  async delAddress(ifindex: number, ipv4: string): Promise<void> {
    const ip = ipv4ToBuffer(ipv4);
    await this.req.delAddress({ family: AF_INET, prefixlen: 32, index: ifindex }, { local: ip, address: ip }, TIMEOUT).catch(ignoreMissing);
  }

  close(): void {
    this.req.socket.close();
    this.events?.socket.close();
    this.events = undefined;
  }
}

/** ENOENT / ESRCH / EADDRNOTAVAIL from a delete: already gone, which is what we wanted. */
function ignoreMissing(err: unknown): void {
  // The package reports kernel errors as Error('Request rejected: <ERRNO NAME>').
  if (err instanceof Error && /\b(ENOENT|ESRCH|EADDRNOTAVAIL|ENODEV)\b/.test(err.message)) return;
  throw err;
}
