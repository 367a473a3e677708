/**
 * The daemon's nftables tables: rendering and atomic application (`nft -f -`, one transaction
 * per call). Guests come and go as map elements, never as rules; the per-packet check is one
 * hashed lookup of `ifname . ether saddr . ip saddr`.
 *
 *   table inet <t>    routed ports (and bridged traffic once the bridge chain marked it):
 *                     map ports4/ports6 → mark, set bridges; refused traffic counted, dropped
 *   table bridge <t>  bridge ports, where `iifname` is the real ingress port: the same maps
 *                     set the mark and force local delivery (ether daddr := the bridge's MAC,
 *                     pkttype host); metadata frames, ARP and NDP for the metadata address are
 *                     never forwarded to another port or the uplink
 */
import { spawn } from 'node:child_process';
import { ipv6ToBuffer } from './addr.js';

export interface TableSpec {
  readonly table: string;
  readonly listenIpv4: string;
  /** Undefined: IPv6 metadata disabled. */
  readonly listenIpv6: string | undefined;
  readonly port: number;
}

/** The maps (and one set) whose elements follow the registry. */
export const MAPS = ['inet ports4', 'inet ports6', 'inet bridges', 'bridge ports4', 'bridge ports6', 'bridge brmac'] as const;
export type MapId = (typeof MAPS)[number];

/** Per map: element key expression → value expression ('' for set elements). */
export type Elements = Record<MapId, Map<string, string>>;

export function emptyElements(): Elements {
  return Object.fromEntries(MAPS.map((m) => [m, new Map<string, string>()])) as Elements;
}

// Names, MACs and addresses are validated by config/, but nothing reaches nft's parser unchecked.
const IFNAME = /^[A-Za-z0-9_.@+-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4 = /^(\d{1,3}\.){3}\d{1,3}$/;
const IPV6 = /^[0-9a-f:]{2,39}$/;
const NAME = /^[a-z][a-z0-9_]{0,31}$/;

export function nftIfname(name: string): string {
  if (!IFNAME.test(name)) throw new Error(`interface name not allowed in nftables: ${JSON.stringify(name)}`);
  return `"${name}"`;
}

export function nftMac(mac: string): string {
  if (!MAC.test(mac)) throw new Error(`bad MAC for nftables: ${JSON.stringify(mac)}`);
  return mac;
}

export function nftIp(ip: string, family: 4 | 6): string {
  if (!(family === 4 ? IPV4 : IPV6).test(ip)) throw new Error(`bad IPv${family} address for nftables: ${JSON.stringify(ip)}`);
  return ip;
}

export function nftMark(mark: number): string {
  return `0x${mark.toString(16).padStart(8, '0')}`;
}

function checkSpec(spec: TableSpec): void {
  if (!NAME.test(spec.table)) throw new Error(`bad table name: ${spec.table}`);
  nftIp(spec.listenIpv4, 4);
  if (spec.listenIpv6 !== undefined) nftIp(spec.listenIpv6, 6);
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw new Error(`bad port: ${spec.port}`);
}

function elementList(m: Map<string, string>): string {
  if (m.size === 0) return '';
  const items = [...m].map(([k, v]) => (v ? `${k} : ${v}` : k));
  return `\n    elements = {\n      ${items.join(',\n      ')}\n    }`;
}

/** The metadata IPv6 address as one 128-bit integer, for raw payload matches (ND target). */
function v6Integer(ip: string): string {
  return `0x${ipv6ToBuffer(ip).toString('hex')}`;
}

const TAG = 'meta mark & 0xf0000000 == 0xa0000000';

type Family = 'inet' | 'bridge';

/** Each map's (or set's) declaration, the same in both tables: its kind and its type. */
const MAP_DECLS: Record<MapId extends `${Family} ${infer Name}` ? Name : never, readonly ['map' | 'set', string]> = {
  ports4: ['map', 'ifname . ether_addr . ipv4_addr : mark'],
  ports6: ['map', 'ifname . ether_addr . ipv6_addr : mark'],
  bridges: ['set', 'ifname'],
  brmac: ['map', 'ifname : ether_addr'],
};

/** The named counters of each table, in order (`readCounters` reads them back): name and comment. */
const COUNTERS: Record<Family, readonly (readonly [string, string])[]> = {
  inet: [
    ['refused4', 'metadata connections from no known (port, MAC, IPv4)'],
    ['refused6', 'metadata connections from no known (port, MAC, IPv6)'],
    ['other4', 'other traffic to the metadata IPv4 address from guests'],
    ['other6', 'other traffic to the metadata IPv6 address from guests'],
  ],
  bridge: [
    ['refused4', 'metadata traffic on bridge ports from no known (port, MAC, IPv4)'],
    ['refused6', 'metadata traffic on bridge ports from no known (port, MAC, IPv6)'],
    ['kept4', 'metadata frames and ARP kept from other bridge ports and the uplink'],
    ['kept6', 'metadata frames and NDP kept from other bridge ports and the uplink'],
  ],
};

/** A table's maps and sets (in `MAPS` order, with their elements), then its counters. */
function declarations(family: Family, els: Elements): string {
  const maps = MAPS.filter((id) => id.startsWith(`${family} `)).map((id) => {
    const name = id.slice(family.length + 1) as keyof typeof MAP_DECLS;
    const [kind, type] = MAP_DECLS[name];
    return `  ${kind} ${name} {\n    type ${type}${elementList(els[id])}\n  }\n`;
  });
  const counters = COUNTERS[family].map(([name, comment]) => `  counter ${name} {\n    comment "${comment}"\n  }\n`);
  return [...maps, ...counters].join('');
}

/**
 * Both tables, each replacing any earlier one (left by a killed run) in the same transaction:
 * `table X` (create if missing) + `delete table X` + the new definition.
 */
export function renderTables(spec: TableSpec, els: Elements): string {
  checkSpec(spec);
  const { table, listenIpv4: m4, listenIpv6: m6, port } = spec;
  const nd = 'icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert }';
  const inet6 = m6
    ? `
    iifname @bridges ip6 daddr ${m6} tcp dport ${port} ${TAG} accept
    ip6 daddr ${m6} tcp dport ${port} meta mark set iifname . ether saddr . ip6 saddr map @ports6 accept
    ip6 daddr ${m6} tcp dport ${port} counter name refused6 drop
    ip6 daddr ${m6} ${nd} accept
    ip6 daddr ${m6} iifname != "lo" counter name other6 drop`
    : '';
  const bridgePre6 = m6
    ? `
    ether type ip6 ip6 daddr ${m6} tcp dport ${port} meta mark set iifname . ether saddr . ip6 saddr map @ports6 ether daddr set iifname map @brmac meta pkttype set host accept
    ether type ip6 ip6 daddr ${m6} ${nd} accept
    ether type ip6 ip6 daddr ${m6} counter name refused6 drop`
    : '';
  const bridgeFwd6 = m6
    ? `
    ether type ip6 ip6 daddr ${m6} counter name kept6 drop
    ether type ip6 icmpv6 type nd-neighbor-solicit @th,64,128 ${v6Integer(m6)} counter name kept6 drop`
    : '';
  return `table inet ${table}
delete table inet ${table}
table inet ${table} {
${declarations('inet', els)}  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    iifname @bridges ip daddr ${m4} tcp dport ${port} ${TAG} accept
    ip daddr ${m4} tcp dport ${port} meta mark set iifname . ether saddr . ip saddr map @ports4 accept
    ip daddr ${m4} tcp dport ${port} counter name refused4 drop
    ip daddr ${m4} iifname != "lo" counter name other4 drop${inet6}
  }
}
table bridge ${table}
delete table bridge ${table}
table bridge ${table} {
${declarations('bridge', els)}  chain prerouting {
    type filter hook prerouting priority -300; policy accept;
    ether type ip ip daddr ${m4} tcp dport ${port} meta mark set iifname . ether saddr . ip saddr map @ports4 ether daddr set iifname map @brmac meta pkttype set host accept
    ether type ip ip daddr ${m4} counter name refused4 drop${bridgePre6}
  }
  chain forward {
    type filter hook forward priority 0; policy accept;
    ether type arp arp daddr ip ${m4} counter name kept4 drop
    ether type ip ip daddr ${m4} counter name kept4 drop${bridgeFwd6}
  }
}
`;
}

/** The element changes turning `from` into `to`, as one transaction ('' when none). */
export function renderElementDiff(table: string, from: Elements, to: Elements): string {
  if (!NAME.test(table)) throw new Error(`bad table name: ${table}`);
  const dels: string[] = [];
  const adds: string[] = [];
  for (const id of MAPS) {
    const [family, name] = id.split(' ') as [string, string];
    const a = from[id];
    const b = to[id];
    const del = [...a].filter(([k, v]) => b.get(k) !== v).map(([k]) => k);
    const add = [...b].filter(([k, v]) => a.get(k) !== v).map(([k, v]) => (v ? `${k} : ${v}` : k));
    if (del.length) dels.push(`delete element ${family} ${table} ${name} { ${del.join(', ')} }`);
    if (add.length) adds.push(`add element ${family} ${table} ${name} { ${add.join(', ')} }`);
  }
  // Deletions first: a changed value is a delete and an add of the same key.
  return [...dels, ...adds].map((l) => `${l}\n`).join('');
}

export function renderDeleteTables(table: string): string {
  if (!NAME.test(table)) throw new Error(`bad table name: ${table}`);
  return ['inet', 'bridge'].map((f) => `table ${f} ${table}\ndelete table ${f} ${table}\n`).join('');
}

/** Runs `nft -f -` with `script` on stdin; rejects with nft's own message. */
export function applyNft(script: string, nftBin = 'nft'): Promise<void> {
  return runNft(['-f', '-'], script, nftBin).then(() => undefined);
}

export function runNft(args: readonly string[], stdin = '', nftBin = 'nft'): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(nftBin, args, { stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(new Error(`cannot run ${nftBin}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`nft ${args.join(' ')} failed (exit ${code}): ${err.trim() || out.trim()}`));
    });
    if (child.stdin) {
      // nft may exit before reading all of it (a parse error): its exit status tells, not EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(stdin);
    }
  });
}

/** Packets counted by the tables' named counters: `refused4`, …, and `bridge_refused4`, …. */
export async function readCounters(table: string, nftBin = 'nft'): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const family of ['inet', 'bridge'] as const) {
    const json = JSON.parse(await runNft(['-j', 'list', 'counters', 'table', family, table], '', nftBin)) as {
      nftables?: { counter?: { name: string; packets: number } }[];
    };
    for (const item of json.nftables ?? []) {
      if (item.counter) out[family === 'inet' ? item.counter.name : `bridge_${item.counter.name}`] = item.counter.packets;
    }
  }
  return out;
}
