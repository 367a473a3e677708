/**
 * The registry: (port, MAC, IP) ⇄ mark ⇄ instance. O(1) by mark, by triple and by id.
 *
 * Marks are stable for a triple while it stays registered (replacing an instance keeps its
 * bindings' marks, so live connections and kernel map elements are untouched) and a freed slot
 * is reused only after the whole slot space has been walked, so a stale connection can never
 * present a mark that already names somebody else. The pipeline checks the binding it resolved
 * at accept time is still the one registered under the mark before every request.
 *
 * Memory (100,000 instances is the scale it is measured at): one small object per binding and
 * nothing derived per instance that can be read off the instance itself. A binding keeps its
 * instance, its port and the port's index, its network and slot as one small integer, and when its
 * instance was first registered (the clock is read once per change, and the instances a change
 * registers share that reading); its mark, key and the `Binding` fields the dataplane reads are
 * getters (the key is spelled once, on first use, and kept). Bindings are found by mark through
 * an array indexed by slot, by triple through a map keyed by the port's IPv4 address (the string
 * the instance holds anyway; a hit is checked field by field: tenant networks may repeat an
 * address), and by id through the binding of the instance's first port;
 * `bindings()` hands the binding objects themselves to the dataplane.
 */
import { EventEmitter } from 'node:events';
import { MARK_TAG, MAX_NETWORK, MAX_SLOT, NETWORK_SHIFT, SLOT_MASK } from '../dataplane/mark.js';
import type { Binding } from '../dataplane/dataplane.js';
import type { Instance, PortSpec } from '../model/instance.js';

/** One registered (port, MAC, IP) of an instance: what a mark names. Also the dataplane's `Binding` of it. */
export interface Bound extends Binding {
  /** `tripleKey` of the port: equal keys, same binding (the pipeline compares it before every request). */
  readonly key: string;
  readonly mark: number;
  readonly instance: Instance;
  readonly portIndex: number;
  readonly port: PortSpec;
  readonly network: number;
}

export interface RegistryChange {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly changed: readonly string[];
  /** Marks that named a binding before this change and no longer do (port removed, instance removed): a connection accepted under one of them must not be served as whatever takes the mark next. */
  readonly unbound: readonly number[];
}

export function tripleKey(ifname: string, mac: string, ipv4: string, network = ''): string {
  return `${network}|${ifname}|${mac}|${ipv4}`;
}

const TAG_NIBBLE = MARK_TAG >>> 28;

function sameTriple(a: PortSpec, b: PortSpec): boolean {
  return a.interface === b.interface && a.mac === b.mac && a.ipv4 === b.ipv4 && (a.network ?? '') === (b.network ?? '');
}

/** The port of the holder of an instance without ports: matches no triple. */
const NO_PORT: PortSpec = Object.freeze({ interface: '', mac: '', ipv4: '' });

/**
 * A binding. An instance without ports (the validator never lets one through, the API allows it)
 * is held by one with `portIndex` -1 that no mark or triple finds.
 */
class Entry implements Bound {
  private key_: string | undefined = undefined;

  constructor(
    readonly instance: Instance,
    /** `instance.ports[portIndex]` (kept: a lookup by triple reads it, and one load is cheaper than three). */
    readonly port: PortSpec,
    readonly portIndex: number,
    /** `network << NETWORK_SHIFT | slot`: the mark without its tag. */
    readonly code: number,
    /** When the instance was first registered: shared by the instances a change registered (a number field would be boxed per binding). */
    readonly registered: Since,
  ) {}

  get since(): number {
    return this.registered.at;
  }

  get key(): string {
    if (this.key_ === undefined) {
      const p = this.port;
      this.key_ = tripleKey(p.interface, p.mac, p.ipv4, p.network);
    }
    return this.key_;
  }

  get mark(): number {
    return (MARK_TAG | this.code) >>> 0;
  }

  get network(): number {
    return this.code >>> NETWORK_SHIFT;
  }

  get slot(): number {
    return this.code & SLOT_MASK;
  }

  get ifname(): string {
    return this.port.interface;
  }

  get mac(): string {
    return this.port.mac;
  }

  get ipv4(): string {
    return this.port.ipv4;
  }

  get ipv6(): string | undefined {
    return this.port.ipv6;
  }

  get bridge(): string | undefined {
    return this.port.bridge;
  }
}

/** The time a change registered its new instances at. */
interface Since {
  readonly at: number;
}

/** The bindings of one IPv4 address: one, or (tenant networks reusing it) several. */
type Chain = Entry | Entry[];

export class Registry extends EventEmitter {
  /** By id: the binding of the instance's first port (or its port-less holder). */
  private readonly byId = new Map<string, Entry>();
  /** By the port's IPv4 address. */
  private readonly byIpv4 = new Map<string, Chain>();
  /** By slot (the mark's low bits; slots are shared by all networks). */
  private readonly bySlot: (Entry | undefined)[] = [];
  private readonly networks = new Map<string, number>([['', 0]]);
  /** Slots in use. */
  private slotsUsed = 0;
  private cursor = 0;
  /** Marks unbound since the last 'change' event (RegistryChange.unbound). */
  private unboundMarks: number[] = [];
  /** When the change being made registers its new instances (the clock is read once per change). */
  private now: Since | undefined;

  constructor(private readonly clock: () => number = Date.now) {
    super();
  }

  get size(): number {
    return this.byId.size;
  }

  byMark(mark: number): Bound | undefined {
    if (mark >>> 28 !== TAG_NIBBLE) return undefined;
    const b = this.bySlot[mark & SLOT_MASK];
    return b !== undefined && b.mark === mark ? b : undefined;
  }

  byTriple(ifname: string, mac: string, ipv4: string, network = ''): Bound | undefined {
    const c = this.byIpv4.get(ipv4);
    if (c === undefined) return undefined;
    const is = (b: Entry): boolean => {
      const p = b.port;
      return p.interface === ifname && p.mac === mac && p.ipv4 === ipv4 && (p.network ?? '') === network;
    };
    if (!Array.isArray(c)) return is(c) ? c : undefined;
    return c.find(is);
  }

  get(id: string): Instance | undefined {
    return this.byId.get(id)?.instance;
  }

  since(id: string): number | undefined {
    return this.byId.get(id)?.since;
  }

  list(): Instance[] {
    const out = new Array<Instance>(this.byId.size);
    let k = 0;
    for (const b of this.byId.values()) out[k++] = b.instance;
    return out;
  }

  /** What the dataplane installs (the binding objects themselves: read-only, replaced when their instance is). */
  bindings(): Binding[] {
    const out = new Array<Binding>(this.slotsUsed);
    let k = 0;
    for (const c of this.byIpv4.values()) {
      if (!Array.isArray(c)) out[k++] = c;
      else for (const b of c) out[k++] = b;
    }
    out.length = k;
    return out;
  }

  /**
   * Makes the registry hold exactly `instances` (already validated as a set: unique ids and
   * triples). Emits one 'change' event.
   */
  replaceAll(instances: readonly Instance[]): RegistryChange {
    this.now = undefined;
    const next = new Set<string>();
    for (const i of instances) next.add(i.id);
    const removed: string[] = [];
    for (const id of this.byId.keys()) if (!next.has(id)) removed.push(id);
    next.clear();
    for (const id of removed) this.drop(id);
    const added: string[] = [];
    const changed: string[] = [];
    for (const inst of instances) {
      const r = this.byId.get(inst.id);
      if (r && r.instance === inst) continue;
      if (r) changed.push(inst.id);
      else added.push(inst.id);
      this.set(inst);
    }
    const change = { added, removed, changed, unbound: this.takeUnbound() };
    if (added.length || removed.length || changed.length) this.emit('change', change);
    return change;
  }

  /**
   * Creates or replaces one instance. Throws (changing nothing) when one of its triples is bound
   * to another instance.
   */
  put(instance: Instance): RegistryChange {
    for (const p of instance.ports) {
      const owner = this.find(p);
      if (owner && owner.instance.id !== instance.id) {
        throw new Error(`port ${p.interface} ${p.mac} ${p.ipv4} is already bound to instance ${owner.instance.id}`);
      }
    }
    const existed = this.byId.has(instance.id);
    this.now = undefined;
    this.set(instance);
    const unbound = this.takeUnbound();
    const change = existed
      ? { added: [], removed: [], changed: [instance.id], unbound }
      : { added: [instance.id], removed: [], changed: [], unbound };
    this.emit('change', change);
    return change;
  }

  delete(id: string): boolean {
    if (!this.byId.has(id)) return false;
    this.drop(id);
    this.emit('change', { added: [], removed: [id], changed: [], unbound: this.takeUnbound() });
    return true;
  }

  private takeUnbound(): number[] {
    const marks = this.unboundMarks;
    this.unboundMarks = [];
    return marks;
  }

  /** The binding registered for `p`'s triple, whoever's it is. */
  private find(p: PortSpec): Entry | undefined {
    const c = this.byIpv4.get(p.ipv4);
    if (c === undefined) return undefined;
    if (!Array.isArray(c)) return sameTriple(c.port, p) ? c : undefined;
    return c.find((b) => sameTriple(b.port, p));
  }

  /** Registers `b` under its triple, in place of whatever binding had that triple. */
  private index(b: Entry): void {
    const p = b.port;
    const c = this.byIpv4.get(p.ipv4);
    if (c === undefined || (!Array.isArray(c) && sameTriple(c.port, p))) this.byIpv4.set(p.ipv4, b);
    else if (!Array.isArray(c)) this.byIpv4.set(p.ipv4, [c, b]);
    else {
      const at = c.findIndex((x) => sameTriple(x.port, p));
      if (at >= 0) c[at] = b;
      else c.push(b);
    }
    this.bySlot[b.slot] = b;
  }

  private set(instance: Instance): void {
    const prev = this.byId.get(instance.id);
    const since = prev?.registered ?? (this.now ??= { at: this.clock() });
    const ports = instance.ports;
    if (prev) {
      for (const p of prev.instance.ports) if (!ports.some((q) => sameTriple(p, q))) this.unbind(p);
    }
    let head: Entry | undefined;
    ports.forEach((port, portIndex) => {
      const old = this.find(port);
      const code = old?.code ?? (this.networkId(port.network ?? '') << NETWORK_SHIFT) | this.nextSlot();
      const b = new Entry(instance, port, portIndex, code, since);
      this.index(b);
      head ??= b;
    });
    this.byId.set(instance.id, head ?? new Entry(instance, NO_PORT, -1, 0, since));
  }

  private drop(id: string): void {
    const r = this.byId.get(id);
    if (!r) return;
    for (const p of r.instance.ports) this.unbind(p);
    this.byId.delete(id);
  }

  /** Frees the binding of `p`'s triple (if any), its slot and its mark. */
  private unbind(p: PortSpec): void {
    const c = this.byIpv4.get(p.ipv4);
    if (c === undefined) return;
    let b: Entry;
    if (!Array.isArray(c)) {
      if (!sameTriple(c.port, p)) return;
      b = c;
      this.byIpv4.delete(p.ipv4);
    } else {
      const at = c.findIndex((x) => sameTriple(x.port, p));
      if (at < 0) return;
      b = c.splice(at, 1)[0] as Entry;
      if (c.length === 1) this.byIpv4.set(p.ipv4, c[0] as Entry);
    }
    this.bySlot[b.slot] = undefined;
    this.slotsUsed--;
    this.unboundMarks.push(b.mark);
  }

  private networkId(name: string): number {
    let id = this.networks.get(name);
    if (id === undefined) {
      id = this.networks.size;
      if (id > MAX_NETWORK) throw new Error(`more than ${MAX_NETWORK} tenant networks on one host`);
      this.networks.set(name, id);
    }
    return id;
  }

  /** Next free slot after the cursor, wrapping; slots are shared by all networks. */
  private nextSlot(): number {
    if (this.slotsUsed >= MAX_SLOT) throw new Error('no free mark slot');
    do {
      this.cursor = this.cursor >= MAX_SLOT ? 1 : this.cursor + 1;
    } while (this.bySlot[this.cursor] !== undefined);
    this.slotsUsed++;
    return this.cursor;
  }
}
