/** GCE identifiers derived from the instance model when its `gce` section leaves them out. */
import type { Instance } from '../../model/instance.js';
import { numericId } from '../common.js';

export const DEFAULT_SCOPES: readonly string[] = ['https://www.googleapis.com/auth/cloud-platform'];
export const DEFAULT_SSH_USER = 'cloudinit';

/** 19 decimal digits (fits a signed 64-bit integer, as GCE's ids do), stable for `id`. */
export function instanceNumericId(inst: Instance): string {
  return inst.gce?.instance_id ?? numericId('gce-instance', inst.id, 19);
}

/** 12 decimal digits, stable for the project name: every instance of a project agrees. */
export function projectNumber(inst: Instance): string {
  return inst.gce?.project_number ?? numericId('gce-project', inst.project, 12);
}

/** The default service account, as GCE names the default compute account. */
export function serviceAccountEmail(inst: Instance): string {
  return inst.gce?.service_account ?? `${projectNumber(inst)}-compute@developer.gserviceaccount.com`;
}

/** The service account's numeric unique id (JWT `sub` and `azp`): 21 digits from its email. */
export function serviceAccountUniqueId(email: string): string {
  return numericId('gce-service-account', email, 21);
}

/** `web-1.example.internal` → `web-1`. */
export function instanceName(inst: Instance): string {
  return inst.hostname.split('.')[0] ?? inst.hostname;
}
