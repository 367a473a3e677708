/**
 * Where the registry's instances come from: sources, layered. Each source (the config file, the
 * admin API's state, the etcd registry) holds its own instances by id; `merged()` is what the
 * registry serves.
 *
 * Precedence is an order, not an override: an id belongs to the first source (in `order`) that
 * has it, and an instance of a later source that collides with one already taken (same id, or a
 * port claimed twice as `checkSet` reports) is left out and reported, never served half. The
 * admin API refuses writes to ids another source owns, and the daemon refuses a config file that
 * defines an id the API owns, so between those two a collision never reaches this point; etcd
 * entries are the ones that can lose here. Nothing is lost: a left-out instance comes back as
 * soon as what shadowed it goes away.
 */
import type { Instance } from '../model/instance.js';

/** A problem found across instances: `index` into the list given to `checkSet`. */
export interface SetProblem {
  readonly index: number;
  readonly message: string;
}

/** Checks a list of instances as a set; reports the later claimant of anything claimed twice. */
export type SetCheck = (instances: readonly Instance[]) => SetProblem[];

export interface Shadowed {
  readonly source: string;
  readonly id: string;
  readonly reason: string;
}

export interface Merged {
  readonly instances: Instance[];
  /** Instances of lower sources left out, and why. */
  readonly shadowed: Shadowed[];
}

/**
 * What one source holds. Replaced whole (the config file, etcd) it keeps the list it was given;
 * written one by one (the admin API) it keeps a map by id. A map of 100,000 ids costs megabytes
 * the registry already spends once; asking a list for one id walks it, which only the admin API's
 * writes do (each of which checks the whole set anyway).
 */
class Layer {
  private list: readonly Instance[] = [];
  private map: Map<string, Instance> | undefined;

  replace(instances: Iterable<Instance>): void {
    // An array is kept as given (callers hand over validated lists they never change), anything else copied.
    const list: readonly Instance[] = Array.isArray(instances) ? (instances as readonly Instance[]) : [...instances];
    const ids = new Set<string>();
    for (const i of list) ids.add(i.id);
    this.map = undefined;
    this.list = list;
    if (ids.size < list.length) this.byId(); // an id given twice: the later one counts, in the earlier one's place
  }

  private byId(): Map<string, Instance> {
    if (this.map === undefined) {
      this.map = new Map();
      for (const i of this.list) this.map.set(i.id, i);
      this.list = [];
    }
    return this.map;
  }

  put(instance: Instance): void {
    this.byId().set(instance.id, instance);
  }

  delete(id: string): boolean {
    return this.byId().delete(id);
  }

  get(id: string): Instance | undefined {
    return this.map !== undefined ? this.map.get(id) : this.list.find((i) => i.id === id);
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  values(): Iterable<Instance> {
    return this.map !== undefined ? this.map.values() : this.list;
  }

  get size(): number {
    return this.map !== undefined ? this.map.size : this.list.length;
  }
}

export class Sources {
  private readonly layers = new Map<string, Layer>();

  /** `order`: source names, the first wins. `checkSet`: the cross-instance checks (config's checkInstanceSet). */
  constructor(
    readonly order: readonly string[],
    private readonly checkSet: SetCheck,
  ) {
    for (const name of order) this.layers.set(name, new Layer());
  }

  private layer(source: string): Layer {
    const l = this.layers.get(source);
    if (!l) throw new Error(`unknown instance source ${source}`);
    return l;
  }

  /** Replaces everything `source` holds. */
  replace(source: string, instances: Iterable<Instance>): void {
    this.layer(source).replace(instances);
  }

  put(source: string, instance: Instance): void {
    this.layer(source).put(instance);
  }

  delete(source: string, id: string): boolean {
    return this.layer(source).delete(id);
  }

  get(source: string, id: string): Instance | undefined {
    return this.layer(source).get(id);
  }

  list(source: string): Instance[] {
    return [...this.layer(source).values()];
  }

  /** How many instances `source` holds. */
  count(source: string): number {
    return this.layer(source).size;
  }

  /** The first source (in order) holding `id`. */
  owner(id: string): string | undefined {
    return this.order.find((s) => this.layer(s).has(id));
  }

  /** Sources (in order) holding `id`. */
  holders(id: string): string[] {
    return this.order.filter((s) => this.layer(s).has(id));
  }

  /** What to serve: every source's instances in order, minus the ones that collide with earlier ones. */
  merged(): Merged {
    const shadowed: Shadowed[] = [];
    const taken = new Map<string, string>();
    // The candidates and their sources, side by side.
    let list: Instance[] = [];
    let from: string[] = [];
    for (const source of this.order) {
      for (const instance of this.layer(source).values()) {
        const first = taken.get(instance.id);
        if (first !== undefined) {
          shadowed.push({ source, id: instance.id, reason: `id ${instance.id} is defined by ${first}` });
          continue;
        }
        taken.set(instance.id, source);
        list.push(instance);
        from.push(source);
      }
    }
    taken.clear();
    // The set check names the later claimant: drop it and check again until clean (a collision
    // can hide another one behind it; each round drops at least one instance).
    for (;;) {
      const problems = this.checkSet(list);
      if (problems.length === 0) break;
      const drop = new Map<number, string>();
      for (const p of problems) if (!drop.has(p.index)) drop.set(p.index, p.message);
      for (const [index, reason] of drop) {
        const instance = list[index];
        if (instance) shadowed.push({ source: from[index] as string, id: instance.id, reason });
      }
      list = list.filter((_, i) => !drop.has(i));
      from = from.filter((_, i) => !drop.has(i));
    }
    return { instances: list, shadowed };
  }
}
