/** Synthetic instances for scale benchmarks: unique id, interface, MAC and IPv4 each, lab-like fields. */

export interface RawInstance {
  id: string;
  hostname: string;
  ports: { interface: string; mac: string; ipv4: string }[];
  project: string;
  region: string;
  zone: string;
  image: string;
  type: string;
  ssh_keys: string[];
  user_data: string;
  tags: Record<string, string>;
}

const hex2 = (n: number): string => (n & 255).toString(16).padStart(2, '0');

/** Instance k (0-based) of a synthetic fleet: interface `bx<k base 36>`, MAC 52:54:01:…, IPv4 10.128.0.0/9 + k + 1. */
export function fakeInstance(k: number): RawInstance {
  const ip = 0x0a800000 + k + 1;
  return {
    id: `i-bench${k.toString(16).padStart(10, '0')}`,
    hostname: `bench-${k}`,
    ports: [
      {
        interface: `bx${k.toString(36)}`,
        mac: `52:54:01:${hex2(k >>> 16)}:${hex2(k >>> 8)}:${hex2(k)}`,
        ipv4: [ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].join('.'),
      },
    ],
    project: 'proj-bench',
    region: 'region-1',
    zone: 'region-1a',
    image: 'img-debian-12',
    type: 'm1.small',
    ssh_keys: [`ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBenchKey${k.toString(36).padStart(12, '0')} bench@${k}`],
    user_data: `#cloud-config\nhostname: bench-${k}\n`,
    tags: { fleet: 'bench', n: String(k) },
  };
}

export function fakeInstances(n: number): RawInstance[] {
  return Array.from({ length: n }, (_, k) => fakeInstance(k));
}
