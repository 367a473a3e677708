/**
 * The registry: (port, MAC, IP) ⇄ mark ⇄ instance. O(1) by mark, by triple and by id.
 *
 * Marks are stable for a triple while it stays registered (replacing an instance keeps its
 * bindings' marks, so live connections and kernel map elements are untouched) and a freed slot
 * is reused only after the whole slot space has been walked, so a stale connection can never
 * present a mark that already names somebody else. The pipeline checks the binding it resolved
 * at accept time is still the one registered under the mark before every request.
 */
import { EventEmitter } from 'node:events';
import { makeMark, MAX_NETWORK, MAX_SLOT, parseMark } from '../dataplane/mark.js';
import type { Binding } from '../dataplane/dataplane.js';
import type { Instance, PortSpec } from '../model/instance.js';

export interface Bound {
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

interface Record_ {
  instance: Instance;
  since: number;
  keys: string[];
}

export function tripleKey(ifname: string, mac: string, ipv4: string, network = ''): string {
  return `${network}|${ifname}|${mac}|${ipv4}`;
}

export class Registry extends EventEmitter {
  private readonly byId = new Map<string, Record_>();
  private readonly byKey = new Map<string, Bound>();
  private readonly byMark_ = new Map<number, Bound>();
  private readonly networks = new Map<string, number>([['', 0]]);
  private readonly slots = new Set<number>();
  private cursor = 0;
  /** Marks unbound since the last 'change' event (RegistryChange.unbound). */
  private unboundMarks: number[] = [];

  constructor(private readonly clock: () => number = Date.now) {
    super();
  }

  get size(): number {
    return this.byId.size;
  }

  byMark(mark: number): Bound | undefined {
    return this.byMark_.get(mark);
  }

  byTriple(ifname: string, mac: string, ipv4: string, network = ''): Bound | undefined {
    return this.byKey.get(tripleKey(ifname, mac, ipv4, network));
  }

  get(id: string): Instance | undefined {
    return this.byId.get(id)?.instance;
  }

  since(id: string): number | undefined {
    return this.byId.get(id)?.since;
  }

  list(): Instance[] {
    return [...this.byId.values()].map((r) => r.instance);
  }

  /** What the dataplane installs. */
  bindings(): Binding[] {
    return [...this.byKey.values()].map((b) => ({
      ifname: b.port.interface,
      mac: b.port.mac,
      ipv4: b.port.ipv4,
      ipv6: b.port.ipv6,
      bridge: b.port.bridge,
      mark: b.mark,
      network: b.network,
    }));
  }

  /**
   * Makes the registry hold exactly `instances` (already validated as a set: unique ids and
   * triples). Emits one 'change' event.
   */
  replaceAll(instances: readonly Instance[]): RegistryChange {
    const next = new Set(instances.map((i) => i.id));
    const removed: string[] = [];
    for (const id of this.byId.keys()) if (!next.has(id)) removed.push(id);
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
      const owner = this.byKey.get(tripleKey(p.interface, p.mac, p.ipv4, p.network));
      if (owner && owner.instance.id !== instance.id) {
        throw new Error(`port ${p.interface} ${p.mac} ${p.ipv4} is already bound to instance ${owner.instance.id}`);
      }
    }
    const existed = this.byId.has(instance.id);
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

  private set(instance: Instance): void {
    const prev = this.byId.get(instance.id);
    const keys = instance.ports.map((p) => tripleKey(p.interface, p.mac, p.ipv4, p.network));
    const keep = new Set(keys);
    for (const k of prev?.keys ?? []) if (!keep.has(k)) this.unbind(k);
    instance.ports.forEach((port, portIndex) => {
      const key = keys[portIndex] as string;
      const old = this.byKey.get(key);
      const network = this.networkId(port.network ?? '');
      const mark = old?.mark ?? makeMark(network, this.nextSlot());
      const bound: Bound = { key, mark, instance, portIndex, port, network };
      this.byKey.set(key, bound);
      this.byMark_.set(mark, bound);
    });
    this.byId.set(instance.id, { instance, since: prev?.since ?? this.clock(), keys });
  }

  private drop(id: string): void {
    const r = this.byId.get(id);
    if (!r) return;
    for (const k of r.keys) this.unbind(k);
    this.byId.delete(id);
  }

  private unbind(key: string): void {
    const b = this.byKey.get(key);
    if (!b) return;
    this.byKey.delete(key);
    this.byMark_.delete(b.mark);
    this.unboundMarks.push(b.mark);
    const slot = parseMark(b.mark)?.slot;
    if (slot !== undefined) this.slots.delete(slot);
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
    if (this.slots.size >= MAX_SLOT) throw new Error('no free mark slot');
    do {
      this.cursor = this.cursor >= MAX_SLOT ? 1 : this.cursor + 1;
    } while (this.slots.has(this.cursor));
    this.slots.add(this.cursor);
    return this.cursor;
  }
}
