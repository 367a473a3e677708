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

export class Sources {
  private readonly layers = new Map<string, Map<string, Instance>>();

  /** `order`: source names, the first wins. `checkSet`: the cross-instance checks (config's checkInstanceSet). */
  constructor(
    readonly order: readonly string[],
    private readonly checkSet: SetCheck,
  ) {
    for (const name of order) this.layers.set(name, new Map());
  }

  private layer(source: string): Map<string, Instance> {
    const l = this.layers.get(source);
    if (!l) throw new Error(`unknown instance source ${source}`);
    return l;
  }

  /** Replaces everything `source` holds. */
  replace(source: string, instances: Iterable<Instance>): void {
    const l = this.layer(source);
    l.clear();
    for (const i of instances) l.set(i.id, i);
  }

  put(source: string, instance: Instance): void {
    this.layer(source).set(instance.id, instance);
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
    let list: { source: string; instance: Instance }[] = [];
    for (const source of this.order) {
      for (const instance of this.layer(source).values()) {
        const first = taken.get(instance.id);
        if (first !== undefined) {
          shadowed.push({ source, id: instance.id, reason: `id ${instance.id} is defined by ${first}` });
          continue;
        }
        taken.set(instance.id, source);
        list.push({ source, instance });
      }
    }
    // The set check names the later claimant: drop it and check again until clean (a collision
    // can hide another one behind it; each round drops at least one instance).
    for (;;) {
      const problems = this.checkSet(list.map((e) => e.instance));
      if (problems.length === 0) break;
      const drop = new Map<number, string>();
      for (const p of problems) if (!drop.has(p.index)) drop.set(p.index, p.message);
      for (const [index, reason] of drop) {
        const e = list[index];
        if (e) shadowed.push({ source: e.source, id: e.instance.id, reason });
      }
      list = list.filter((_, i) => !drop.has(i));
    }
    return { instances: list.map((e) => e.instance), shadowed };
  }
}
