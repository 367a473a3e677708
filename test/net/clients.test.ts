// The real clients, run inside guest namespaces against the daemon: cloud-init's EC2, OpenStack
// and GCE readers (Debian's package, /usr/bin/python3), @smithy/credential-provider-imds,
// gcp-metadata and @azure/identity (pinned in test/clients, installed by scripts/test-clients.sh).
// Each must get its own guest's id, hostname, keys, user-data and credentials.
import t from 'tap';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { instanceNumericId, projectNumber } from '../../src/dialects/gce/index.js';
import { instanceUuid } from '../../src/dialects/openstack/index.js';
import { repoRoot } from '../../src/lab/daemon.js';
import type { Lab, LabInstance } from '../../src/lab/lab.js';
import type { Instance } from '../../src/model/instance.js';
import { adminGet, withServedLab } from '../helpers/net.js';

const CLIENTS = join(repoRoot(), 'test', 'clients');
const PYTHON = '/usr/bin/python3';
const EXPIRATION = '2030-01-01T00:00:00Z';

const missing = [
  existsSync(join(CLIENTS, 'node_modules', 'gcp-metadata')) ? undefined : 'npm clients (bash scripts/test-clients.sh)',
  existsSync('/usr/lib/python3/dist-packages/cloudinit/sources/DataSourceGCE.py') ? undefined : 'cloud-init (bash scripts/test-clients.sh)',
].filter((x) => x !== undefined);
if (missing.length > 0) {
  t.fail(`the real clients are not installed: ${missing.join(', ')}`);
  process.exit(1);
}

/** The model fields the dialects derive ids from, enough for instanceNumericId & co. */
const asInstance = (i: LabInstance): Instance => i as unknown as Instance;

/**
 * Runs argv in guest i with a clean environment (no AWS_*, AZURE_*, GCE_* variables leak in)
 * and a resolv.conf pointing at the guest's own loopback, so a client's DNS lookups
 * (metadata.google.internal) fail at once inside the namespace.
 */
async function client(lab: Lab, i: number, argv: string[]): Promise<unknown> {
  const r = await lab.execRaw(i, ['env', '-i', 'PATH=/usr/bin:/bin', `HOME=${lab.dir}`, 'LANG=C.UTF-8', ...argv], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`${argv.join(' ')} in guest ${i} exited ${r.code}:\n${r.stderr.slice(-3000)}`);
  return JSON.parse(r.stdout) as unknown;
}

/** /etc/netns/<ns>/resolv.conf is bind-mounted over /etc/resolv.conf by `ip netns exec`. */
function isolateDns(t: { teardown(fn: () => void): void }, lab: Lab): void {
  for (const g of lab.guests()) {
    const dir = join('/etc/netns', g.ns);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'resolv.conf'), 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n');
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  }
}

t.test("real clients get their own guest's data in every dialect", async (t) => {
  const { lab, config } = await withServedLab(t, {
    guests: 3,
    edit: (c) => {
      c.instances.forEach((inst, k) => {
        const n = k + 1;
        inst['role'] = {
          name: `role-${n}`,
          access_key_id: `AKIALAB${n}`,
          secret_access_key: `secret-${n}`,
          token: `session-${n}`,
          expiration: EXPIRATION,
        };
        inst['gce'] = { token: { access_token: `ya29.lab-${n}`, expiration: EXPIRATION } };
        inst['azure'] = { token: { access_token: `eyJ.lab-${n}`, expiration: EXPIRATION } };
      });
      // Guest 3 requires IMDSv2 session tokens.
      (c.instances[2] as LabInstance)['ec2'] = { tokens: 'required' };
    },
  });
  isolateDns(t, lab);
  const inst = (i: number): LabInstance => config.instances[i - 1] as LabInstance;
  const keyOf = (i: number): string => (inst(i)['ssh_keys'] as string[])[0] ?? '';
  const userData = (i: number): string => inst(i)['user_data'] as string;
  const py = (i: number, which: string) => client(lab, i, [PYTHON, join(CLIENTS, 'cloudinit_probe.py'), which]);
  const node = (i: number, which: string) => client(lab, i, [process.execPath, join(CLIENTS, 'probe.cjs'), which]);

  const answeredByLoop = async (): Promise<number> =>
    ((await adminGet(config.admin.socket, '/v1/stats')).body as { pipeline: { fastPath?: { answered: number } } }).pipeline.fastPath
      ?.answered ?? 0;

  await t.test('cloud-init EC2 helper: the full crawl', async (t) => {
    const before = await answeredByLoop();
    for (const i of [1, 2]) {
      const r = (await py(i, 'ec2')) as { 'meta-data': Record<string, unknown>; 'user-data': string };
      const md = r['meta-data'];
      t.equal(md['instance-id'], inst(i).id, `guest ${i}: its instance-id`);
      t.equal(md['local-hostname'], inst(i).hostname);
      t.equal(md['local-ipv4'], lab.guest(i).ipv4);
      t.same(md['public-keys'], { [`lab@guest-${i}`]: keyOf(i) }, 'its key');
      t.equal(r['user-data'], userData(i), 'its user-data');
      // cloud-init skips iam/security-credentials by design; the credentials are the SDK's test below.
      t.match(
        md['iam'],
        { info: { Code: 'Success', InstanceProfileArn: `arn:aws:iam::proj-lab:instance-profile/role-${i}` } },
        'the crawl reached iam/info',
      );
    }
    // The guests' trees were pre-rendered at start: the native loop answered the crawls' reads.
    const answered = (await answeredByLoop()) - before;
    t.ok(answered >= 60, `the native loop answered ${answered} of the two crawls' requests`);
  });

  await t.test('cloud-init OpenStack reader: read_v2()', async (t) => {
    const r = (await py(1, 'openstack')) as Record<string, unknown> & { metadata: Record<string, unknown> };
    t.equal(r['version'], 2);
    t.equal(r.metadata['uuid'], instanceUuid(asInstance(inst(1))));
    t.equal(r.metadata['instance-id'], instanceUuid(asInstance(inst(1))), 'cloud-init copies uuid to instance-id');
    t.equal(r.metadata['local-hostname'], inst(1).hostname);
    t.same(r.metadata['public_keys'], { 'lab@guest-1': keyOf(1) });
    t.equal(r['userdata'], userData(1));
    t.match(r['networkdata'], { links: [{ ethernet_mac_address: lab.guest(1).mac }], networks: [{ ip_address: lab.guest(1).ipv4 }] });
    t.same(r['vendordata'], {});
    t.same(r['vendordata2'], {});
    t.equal((r['ec2-metadata'] as Record<string, unknown>)['instance-id'], inst(1).id, 'the EC2 tree beside it, as nova');
  });

  await t.test('cloud-init GCE datasource: read_md()', async (t) => {
    const r = (await py(1, 'gce')) as {
      success: boolean;
      reason: unknown;
      'meta-data': Record<string, unknown>;
      'user-data': string;
      'ssh-keys': string[];
    };
    t.equal(r.success, true, `success (${String(r.reason)})`);
    t.equal(r['meta-data']['instance-id'], instanceNumericId(asInstance(inst(1))));
    t.equal(r['meta-data']['local-hostname'], inst(1).hostname);
    t.equal(r['meta-data']['availability-zone'], 'region-1a');
    t.equal(r['user-data'], userData(1));
    t.same(r['ssh-keys'], [keyOf(1)], 'the key, accepted for the default user');
  });

  await t.test('@smithy/credential-provider-imds fromInstanceMetadata()', async (t) => {
    const want = (i: number) => ({
      accessKeyId: `AKIALAB${i}`,
      secretAccessKey: `secret-${i}`,
      sessionToken: `session-${i}`,
      expiration: '2030-01-01T00:00:00.000Z',
    });
    t.match(await node(1, 'imds'), want(1), 'guest 1 (IMDSv2, v1 fallback allowed)');
    t.match(await node(1, 'imds-v1-disabled'), want(1), 'guest 1 (v1 fallback disabled)');
    t.match(await node(3, 'imds-v1-disabled'), want(3), 'guest 3 (tokens required, v1 fallback disabled)');
    t.match(await node(3, 'imds'), want(3), 'guest 3 (tokens required)');
  });

  await t.test('gcp-metadata isAvailable() and instance()', async (t) => {
    for (const i of [1, 2]) {
      t.same(
        await node(i, 'gcp'),
        { available: true, hostname: inst(i).hostname, id: instanceNumericId(asInstance(inst(i))), projectId: 'proj-lab' },
        `guest ${i}`,
      );
    }
    t.match(projectNumber(asInstance(inst(1))), /^\d{12}$/);
  });

  await t.test('@azure/identity ManagedIdentityCredential.getToken()', async (t) => {
    for (const i of [1, 2]) {
      const tok = (await node(i, 'azure')) as { token: string; expiresOnTimestamp: number };
      t.equal(tok.token, `eyJ.lab-${i}`, `guest ${i}: its configured token`);
      // MSAL computes the expiry as (its whole-second clock when it sent the request) + expires_in:
      // when a second ticks between sending and our answer it lands one second early, never later.
      const exp = Date.parse(EXPIRATION);
      t.ok(tok.expiresOnTimestamp <= exp && tok.expiresOnTimestamp >= exp - 1000, `guest ${i}: expiry ${tok.expiresOnTimestamp} ~ ${exp}`);
    }
  });
});
