// A small nova-compatible metadata server for the upstream backend tests, run inside a lab's
// hypervisor namespace (`ip netns exec <hv> node nova-server.mjs`), never in the machine's own.
// It checks the identity headers as nova's metadata handler does (_handle_instance_id_request):
// missing headers 400, the signature compared with hmac.compare_digest's equivalent
// (crypto.timingSafeEqual) and 403 on mismatch, unknown instance or wrong tenant 404.
// Control over the IPC channel: {cmd:'calls'} → {calls, byKey}, {cmd:'delay', ms}, {cmd:'reset'}.
// Argument: one JSON object { port, secret, instances: { <id>: { project } } }.
import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';

const opts = JSON.parse(process.argv[2] ?? '{}');
let delay = 0;
let calls = 0;
let byKey = {};

const server = http.createServer((req, res) => {
  calls++;
  const id = req.headers['x-instance-id'];
  const key = `${String(id)} ${req.url}`;
  byKey[key] = (byKey[key] ?? 0) + 1;
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
  // Anything else: what nova was told, as JSON.
  answer(200, JSON.stringify({ uuid: id, url: req.url, headers: req.headers, n: calls }), 'application/json');
});

process.on('message', (m) => {
  if (m.cmd === 'delay') delay = m.ms;
  if (m.cmd === 'reset') {
    calls = 0;
    byKey = {};
  }
  process.send?.({ calls, byKey });
});
process.on('disconnect', () => process.exit(0));
server.listen(opts.port, '127.0.0.1', () => process.send?.({ ready: true }));
