/**
 * rtnetlink, through the `netlink` package: links (and their events), the daemon's routes,
 * policy rules, neighbour entries and addresses. Routes and rules linkgate installs carry its
 * protocol number, so a later run finds them again; the IPv4 address carries the label
 * `lo:linkgate`.
 */
import { createRtNetlink, FlagsNew, type RtNetlinkSocket } from 'netlink';
import { bufferToIp, bufferToMac, familyOf, ipToBuffer, macToBuffer, type Family } from './addr.js';

/** rtm_protocol / FRA_PROTOCOL of everything linkgate installs. */
export const RT_PROTO_LINKGATE = 0xa9;
const AF: Record<Family, number> = { 4: 2, 6: 10 };
const CREATE_REPLACE = FlagsNew.CREATE | FlagsNew.REPLACE;
const TIMEOUT = { timeout: 5000 };
/** IFA_F_NODAD */
const NODAD = { nodad: true } as const;

export interface LinkInfo {
  readonly index: number;
  readonly name: string;
  readonly up: boolean;
  /** Lower-case MAC, '' when the link has none. */
  readonly mac: string;
  /** ifindex of the bridge (or bond) the link is enslaved to. */
  readonly master: number | undefined;
}

export interface OwnRoute {
  readonly family: Family;
  readonly table: number;
  readonly dst: string;
  readonly dstLen: number;
  readonly oif: number | undefined;
}

export interface OwnRule {
  readonly family: Family;
  readonly pref: number;
  readonly fwmark: number;
  readonly fwmask: number;
  readonly table: number;
}

/** The rtm_table byte: the table itself below 256, else 0 (RT_TABLE_UNSPEC) and the RTA_TABLE attribute rules. */
const tableByte = (table: number): number => (table < 256 ? table : 0);

/** ENOENT / ESRCH / EADDRNOTAVAIL / ENODEV from a delete: already gone, which is what we wanted. */
function ignoreMissing(err: unknown): void {
  // The package reports kernel errors as Error('Request rejected: <ERRNO NAME>').
  if (err instanceof Error && /\b(ENOENT|ESRCH|EADDRNOTAVAIL|ENODEV)\b/.test(err.message)) return;
  throw err;
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
      const mac = m.attrs.address?.length === 6 ? bufferToMac(m.attrs.address) : '';
      out.set(name, { index, name, up: Boolean(m.data.flags?.up), mac, master: m.attrs.master });
    }
    return out;
  }

  /** A host route (/32 or /128) to a guest via its port, in `table`, tagged as ours. */
  async addHostRoute(table: number, ip: string, ifindex: number): Promise<void> {
    const f = familyOf(ip);
    await this.req.newRoute(
      {
        family: AF[f],
        dstLen: f === 4 ? 32 : 128,
        table: tableByte(table),
        protocol: RT_PROTO_LINKGATE as never,
        scope: 'LINK',
        type: 'UNICAST',
      },
      { dst: ipToBuffer(ip), oif: ifindex, table },
      { flags: CREATE_REPLACE, ...TIMEOUT },
    );
  }

  async delHostRoute(table: number, ip: string, ifindex: number | undefined): Promise<void> {
    const f = familyOf(ip);
    await this.req
      .delRoute(
        // Scope NOWHERE matches a route of any scope on delete.
        { family: AF[f], dstLen: f === 4 ? 32 : 128, table: tableByte(table), protocol: RT_PROTO_LINKGATE as never, scope: 'NOWHERE' },
        { dst: ipToBuffer(ip), table, ...(ifindex !== undefined ? { oif: ifindex } : {}) },
        TIMEOUT,
      )
      .catch(ignoreMissing);
  }

  /** Every route tagged as ours, in any table, both families. */
  async ownRoutes(): Promise<OwnRoute[]> {
    const out: OwnRoute[] = [];
    for (const family of [4, 6] as const) {
      for (const m of await this.req.getRoutes({ family: AF[family] }, undefined, TIMEOUT)) {
        if (Number(m.data.protocol) !== RT_PROTO_LINKGATE || !m.attrs.dst) continue;
        out.push({
          family,
          table: m.attrs.table ?? m.data.table ?? 0,
          dst: bufferToIp(m.attrs.dst),
          dstLen: m.data.dstLen ?? 0,
          oif: m.attrs.oif,
        });
      }
    }
    return out;
  }

  async flushOwnRoutes(): Promise<number> {
    let n = 0;
    for (const r of await this.ownRoutes()) {
      await this.req
        .delRoute(
          { family: AF[r.family], dstLen: r.dstLen, table: tableByte(r.table), protocol: RT_PROTO_LINKGATE as never, scope: 'NOWHERE' },
          { dst: ipToBuffer(r.dst), table: r.table, ...(r.oif !== undefined ? { oif: r.oif } : {}) },
          TIMEOUT,
        )
        .then(() => n++, ignoreMissing);
    }
    return n;
  }

  /** `ip [-6] rule add fwmark MARK/MASK lookup TABLE pref PREF proto linkgate` */
  async addFwmarkRule(family: Family, pref: number, mark: number, mask: number, table: number): Promise<void> {
    await this.req.newRule(
      { family: AF[family], table: tableByte(table), action: 'toTbl' },
      { priority: pref, fwmark: mark, fwmask: mask, table, protocol: RT_PROTO_LINKGATE },
      { flags: FlagsNew.CREATE | FlagsNew.EXCL, ...TIMEOUT },
    );
  }

  async ownRules(): Promise<OwnRule[]> {
    const out: OwnRule[] = [];
    for (const family of [4, 6] as const) {
      for (const m of await this.req.getRules({ family: AF[family] }, undefined, TIMEOUT)) {
        if (m.attrs.protocol !== RT_PROTO_LINKGATE) continue;
        out.push({
          family,
          pref: m.attrs.priority ?? 0,
          fwmark: m.attrs.fwmark ?? 0,
          fwmask: m.attrs.fwmask ?? 0xffffffff,
          table: m.attrs.table ?? m.data.table ?? 0,
        });
      }
    }
    return out;
  }

  async flushOwnRules(): Promise<number> {
    let n = 0;
    for (const r of await this.ownRules()) {
      await this.req
        .delRule(
          { family: AF[r.family], table: tableByte(r.table), action: 'toTbl' },
          { priority: r.pref, fwmark: r.fwmark, fwmask: r.fwmask, table: r.table, protocol: RT_PROTO_LINKGATE },
          TIMEOUT,
        )
        .then(() => n++, ignoreMissing);
    }
    return n;
  }

  /** A permanent neighbour entry: replies reach the configured MAC, whatever ARP/NDP says. */
  async addNeighbor(ifindex: number, ip: string, mac: string): Promise<void> {
    await this.req.newNeighbor(
      { family: AF[familyOf(ip)], ifindex, state: { permanent: true } },
      { dst: ipToBuffer(ip), lladdr: macToBuffer(mac) },
      { flags: CREATE_REPLACE, ...TIMEOUT },
    );
  }

  async delNeighbor(ifindex: number, ip: string): Promise<void> {
    await this.req.delNeighbor({ family: AF[familyOf(ip)], ifindex }, { dst: ipToBuffer(ip) }, TIMEOUT).catch(ignoreMissing);
  }

  /** Addresses on a link: address → label ('' for IPv6, which has none). */
  async addresses(ifindex: number, family: Family): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const m of await this.req.getAddresses({ family: AF[family] }, undefined, TIMEOUT)) {
      const a = m.attrs.local ?? m.attrs.address;
      if (m.data.index !== ifindex || !a) continue;
      out.set(bufferToIp(a), m.attrs.label ?? '');
    }
    return out;
  }

  /** Adds ip/32 or ip/128 (scope global; IPv4 with `label`, IPv6 without DAD), replacing an equal one. */
  async addAddress(ifindex: number, ip: string, label: string): Promise<void> {
    const f = familyOf(ip);
    const b = ipToBuffer(ip);
    await this.req.newAddress(
      { family: AF[f], prefixlen: f === 4 ? 32 : 128, scope: 0, index: ifindex, ...(f === 6 ? { flags: NODAD } : {}) },
      f === 4 ? { local: b, address: b, label } : { address: b, flags: NODAD },
      { flags: CREATE_REPLACE, ...TIMEOUT },
    );
  }

  async delAddress(ifindex: number, ip: string): Promise<void> {
    const f = familyOf(ip);
    const b = ipToBuffer(ip);
    await this.req
      .delAddress(
        { family: AF[f], prefixlen: f === 4 ? 32 : 128, index: ifindex },
        f === 4 ? { local: b, address: b } : { address: b },
        TIMEOUT,
      )
      .catch(ignoreMissing);
  }

  close(): void {
    this.req.socket.close();
    this.events?.socket.close();
    this.events = undefined;
  }
}
