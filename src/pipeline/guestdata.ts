/**
 * Values guests store through a dialect (OpenStack's posted password), per instance id, in memory.
 * A dialect returns `store`; the pipeline keeps it here; the next request of the same instance
 * sees it in `DialectContext.guestData`. Removing an instance forgets its values.
 */
export class GuestData {
  private readonly byId = new Map<string, Readonly<Record<string, string>>>();

  get(instanceId: string): Readonly<Record<string, string>> | undefined {
    return this.byId.get(instanceId);
  }

  set(instanceId: string, key: string, value: string): void {
    this.byId.set(instanceId, Object.freeze({ ...(this.byId.get(instanceId) ?? {}), [key]: value }));
  }

  forget(instanceId: string): void {
    this.byId.delete(instanceId);
  }
}
