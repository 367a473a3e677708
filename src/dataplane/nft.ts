/**
 * The daemon's nftables table: rendering and atomic application (`nft -f -`, one transaction
 * per call). The table holds a concatenated map `ifname . ether saddr . ip saddr : mark`; the
 * per-packet check is one hashed lookup, and guests come and go as map elements, never as rules.
 */
import { spawn } from 'node:child_process';

export const TABLE_FAMILY = 'inet';

export interface MapElement {
  readonly ifname: string;
  readonly mac: string;
  readonly ipv4: string;
  readonly mark: number;
}

export interface TableSpec {
  readonly table: string;
  readonly listenIpv4: string;
  readonly port: number;
}

// Interface names and MACs are validated by config/, but nothing reaches nft's parser unchecked.
const IFNAME = /^[A-Za-z0-9_.@+-]{1,15}$/;
const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;
const IPV4 = /^(\d{1,3}\.){3}\d{1,3}$/;
const NAME = /^[a-z][a-z0-9_]{0,31}$/;

export function elementKey(e: Omit<MapElement, 'mark'>): string {
  if (!IFNAME.test(e.ifname)) throw new Error(`interface name not allowed in nftables: ${JSON.stringify(e.ifname)}`);
  if (!MAC.test(e.mac)) throw new Error(`bad MAC for nftables: ${JSON.stringify(e.mac)}`);
  if (!IPV4.test(e.ipv4)) throw new Error(`bad IPv4 for nftables: ${JSON.stringify(e.ipv4)}`);
  return `"${e.ifname}" . ${e.mac} . ${e.ipv4}`;
}

function element(e: MapElement): string {
  return `${elementKey(e)} : 0x${e.mark.toString(16).padStart(8, '0')}`;
}

function checkSpec(spec: TableSpec): void {
  if (!NAME.test(spec.table)) throw new Error(`bad table name: ${spec.table}`);
  if (!IPV4.test(spec.listenIpv4)) throw new Error(`bad listen address: ${spec.listenIpv4}`);
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 65535) throw new Error(`bad port: ${spec.port}`);
}

/**
 * The whole table, replacing any earlier one (left by a killed run) in the same transaction:
 * `table X` (create if missing) + `delete table X` + the new definition.
 */
export function renderTable(spec: TableSpec, elements: readonly MapElement[]): string {
  checkSpec(spec);
  const t = `${TABLE_FAMILY} ${spec.table}`;
  const elems = elements.length ? `\n    elements = {\n      ${elements.map(element).join(',\n      ')}\n    }` : '';
  const md = `ip daddr ${spec.listenIpv4}`;
  return `table ${t}
delete table ${t}
table ${t} {
  map ports4 {
    type ifname . ether_addr . ipv4_addr : mark${elems}
  }
  counter refused4 {
    comment "metadata connections from no known (port, MAC, IP)"
  }
  counter other4 {
    comment "other traffic to the metadata address from guests"
  }
  chain prerouting {
    type filter hook prerouting priority mangle; policy accept;
    ${md} tcp dport ${spec.port} meta mark set iifname . ether saddr . ip saddr map @ports4 accept
    ${md} tcp dport ${spec.port} counter name refused4 drop
    ${md} iifname != "lo" counter name other4 drop
  }
}
`;
}

/** Element changes as one transaction. */
export function renderElementChanges(spec: TableSpec, add: readonly MapElement[], del: readonly MapElement[]): string {
  checkSpec(spec);
  const t = `${TABLE_FAMILY} ${spec.table}`;
  let out = '';
  if (del.length) out += `delete element ${t} ports4 { ${del.map(elementKey).join(', ')} }\n`;
  if (add.length) out += `add element ${t} ports4 { ${add.map(element).join(', ')} }\n`;
  return out;
}

export function renderDeleteTable(table: string): string {
  if (!NAME.test(table)) throw new Error(`bad table name: ${table}`);
  return `table ${TABLE_FAMILY} ${table}\ndelete table ${TABLE_FAMILY} ${table}\n`;
}

/** Runs `nft -f -` with `script` on stdin; rejects with nft's own message. */
export function applyNft(script: string, nftBin = 'nft'): Promise<void> {
  return runNft(['-f', '-'], script, nftBin).then(() => undefined);
}

export function runNft(args: readonly string[], stdin = '', nftBin = 'nft'): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(nftBin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.on('error', (e) => reject(new Error(`cannot run ${nftBin}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(out);
      else reject(new Error(`nft ${args.join(' ')} failed (exit ${code}): ${err.trim() || out.trim()}`));
    });
    child.stdin.end(stdin);
  });
}

/** Packets counted by the table's named counters. */
export async function readCounters(table: string, nftBin = 'nft'): Promise<Record<string, number>> {
  const json = JSON.parse(await runNft(['-j', 'list', 'counters', 'table', TABLE_FAMILY, table], '', nftBin)) as {
    nftables?: { counter?: { name: string; packets: number } }[];
  };
  const out: Record<string, number> = {};
  for (const item of json.nftables ?? []) if (item.counter) out[item.counter.name] = item.counter.packets;
  return out;
}
