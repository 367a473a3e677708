// A small nova-compatible metadata server for the upstream backend tests, run inside a lab's
// hypervisor namespace (`ip netns exec <hv> node nova-server.mjs`), never in the machine's own.
// It checks the identity headers as nova's metadata handler does (_handle_instance_id_request):
// missing headers 400, the signature compared with hmac.compare_digest's equivalent
// (crypto.timingSafeEqual) and 403 on mismatch, unknown instance or wrong tenant 404.
// Control over the IPC channel: {cmd:'calls'} → {calls, byKey}, {cmd:'delay', ms}, {cmd:'reset'},
// {cmd:'times'} → {calls, byKey, times} (times: per key, when each call arrived, ms on the monotonic clock).
// Argument: one JSON object { port, secret, instances: { <id>: { project, ...ec2 fields } } }.
// Besides the paths below it serves an EC2 tree under /latest/ shaped like linkgate's embedded one
// (listings, public-keys `0=name`, user-data, identity document), so a cloud-init crawl through the
// upstream backend walks as many paths as through the embedded store (bench/run.ts). The optional
// instance fields hostname, mac, ipv4, ssh_keys, user_data, tags fill it; defaults otherwise.
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import { performance } from 'node:perf_hooks';

const opts = JSON.parse(process.argv[2] ?? '{}');
let delay = 0;
let calls = 0;
let byKey = {};
let times = {};

/** The EC2 tree of one instance: path → body; a listing's path ends in '/'. */
function ec2Tree(id, inst) {
  const t = new Map();
  const hostname = inst.hostname ?? id;
  const mac = inst.mac ?? '52:54:00:00:00:01';
  const ipv4 = inst.ipv4 ?? '10.0.0.1';
  const keys = inst.ssh_keys ?? [`ssh-ed25519 AAAA${id} nova@${hostname}`];
  const tags = inst.tags ?? {};
  // A directory: its listing, and its entries under it; a string is a leaf.
  const put = (base, entries) => {
    const lines = [];
    for (const [name, v] of Object.entries(entries)) {
      if (typeof v === 'string') {
        lines.push(name);
        t.set(base + name, v);
      } else {
        lines.push(`${name}/`);
        put(`${base}${name}/`, v);
      }
    }
    t.set(base, lines.join('\n'));
  };
  const macDir = {
    'device-number': '0',
    'interface-id': `eni-${id}`,
    'local-hostname': hostname,
    'local-ipv4s': ipv4,
    mac,
    'owner-id': inst.project,
  };
  put('/latest/meta-data/', {
    'ami-id': 'ami-00000001',
    'ami-launch-index': '0',
    'ami-manifest-path': 'FIXME',
    'block-device-mapping': { ami: 'vda', root: '/dev/vda' },
    hostname,
    'instance-action': 'none',
    'instance-id': id,
    'instance-life-cycle': 'on-demand',
    'instance-type': 'm1.small',
    'local-hostname': hostname,
    'local-ipv4': ipv4,
    mac,
    network: { interfaces: { macs: { [mac]: macDir } } },
    placement: { 'availability-zone': 'nova', region: 'RegionOne' },
    profile: 'default-hvm',
    'reservation-id': `r-${id}`,
    'security-groups': 'default',
    services: { domain: 'openstack.org', partition: 'openstack' },
    ...(Object.keys(tags).length > 0 ? { tags: { instance: tags } } : {}),
  });
  // public-keys/ lists `0=name`; the key itself is under 0/.
  t.set('/latest/meta-data/', `${t.get('/latest/meta-data/')}\npublic-keys/`);
  t.set('/latest/meta-data/public-keys/', keys.map((k, i) => `${i}=key-${i}`).join('\n'));
  keys.forEach((k, i) => {
    t.set(`/latest/meta-data/public-keys/${i}/`, 'openssh-key');
    t.set(`/latest/meta-data/public-keys/${i}/openssh-key`, k);
  });
  if (inst.user_data !== undefined) t.set('/latest/user-data', inst.user_data);
  t.set(
    '/latest/dynamic/instance-identity/document',
    JSON.stringify({ accountId: inst.project, availabilityZone: 'nova', instanceId: id, privateIp: ipv4, region: 'RegionOne' }, null, 2),
  );
  return t;
}
const trees = new Map();
const treeOf = (id, inst) => {
  let t = trees.get(id);
  if (!t) trees.set(id, (t = ec2Tree(id, inst)));
  return t;
};

const server = http.createServer((req, res) => {
  calls++;
  const id = req.headers['x-instance-id'];
  const key = `${String(id)} ${req.url}`;
  byKey[key] = (byKey[key] ?? 0) + 1;
  (times[key] ??= []).push(Math.round(performance.now() * 1000) / 1000);
  const answer = (status, body, type = 'text/plain') => {
    setTimeout(() => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    }, delay);
  };
  const sig = req.headers['x-instance-id-signature'];
  const tenant = req.headers['x-tenant-id'];
  if (typeof id !== 'string') return answer(400, 'X-Instance-ID header is missing from request.');
  if (typeof sig !== 'string') return answer(400, 'X-Instance-ID-Signature header is missing from request.');
  if (typeof tenant !== 'string') return answer(400, 'X-Tenant-ID header is missing from request.');
  const expected = createHmac('sha256', opts.secret).update(id).digest('hex');
  const a = Buffer.from(expected);
  const b = Buffer.from(sig);
  if (a.length !== b.length || !timingSafeEqual(a, b)) return answer(403, 'Invalid proxy request signature.');
  const inst = opts.instances[id];
  if (!inst || inst.project !== tenant) return answer(404, 'Not Found');
  const path = (req.url ?? '/').split('?')[0];
  if (path === '/latest/meta-data/instance-id') return answer(200, id);
  if (path === '/big') return answer(200, 'x'.repeat(2 * 1024 * 1024));
  if (path === '/missing') return answer(404, 'Not Found');
  const leaf = path.startsWith('/latest/') ? treeOf(id, inst).get(path) : undefined;
  if (leaf !== undefined) return answer(200, leaf);
  // Anything else: what nova was told, as JSON.
  answer(200, JSON.stringify({ uuid: id, url: req.url, headers: req.headers, n: calls }), 'application/json');
});

process.on('message', (m) => {
  if (m.cmd === 'delay') delay = m.ms;
  if (m.cmd === 'reset') {
    calls = 0;
    byKey = {};
    times = {};
  }
  process.send?.(m.cmd === 'times' ? { calls, byKey, times } : { calls, byKey });
});
process.on('disconnect', () => process.exit(0));
server.listen(opts.port, '127.0.0.1', () => process.send?.({ ready: true }));
