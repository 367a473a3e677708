/**
 * `npm start`: a lab of guests, the daemon in the lab's hypervisor namespace, a request from
 * every guest, IMDSv2 from one, a spoofing attempt, a summary table, and a clean teardown.
 *
 * After the N routed guests, guest N+1 is bridged (a port of <prefix>br), N+2 asks over IPv6
 * (fd00:ec2::254), and N+3 / N+4 are on tenant networks tenant-a / tenant-b with the same IPv4 and
 * MAC; each gets a row and counts toward the exit code like the others. LINKGATE_DEMO_FULL=0
 * leaves them out (routed guests only).
 */
import { adminGet } from './admin.js';
import { startDaemon, type DaemonProc } from './daemon.js';
import { createLab, METADATA_IPV4, type GuestInfo, type Lab, type LabOptions } from './lab.js';
import { installLabSafetyNet } from './safety.js';

interface Row {
  guest: string;
  port: string;
  mac: string;
  ip: string;
  route: string;
  expected: string;
  got: string;
  verdict: string;
}

function table(rows: readonly Row[]): string {
  const cols: (keyof Row)[] = ['guest', 'port', 'mac', 'ip', 'route', 'expected', 'got', 'verdict'];
  const width = (c: keyof Row): number => Math.max(c.length, ...rows.map((r) => r[c].length));
  const line = (r: Record<keyof Row, string>): string => `| ${cols.map((c) => r[c].padEnd(width(c))).join(' | ')} |`;
  const head = Object.fromEntries(cols.map((c) => [c, c])) as Record<keyof Row, string>;
  const sep = `|${cols.map((c) => '-'.repeat(width(c) + 2)).join('|')}|`;
  return [line(head), sep, ...rows.map(line)].join('\n');
}

const say = (s: string): void => void process.stdout.write(`${s}\n`);

/** The bridged, IPv6 and tenant-network guests are left out only when LINKGATE_DEMO_FULL=0. */
export function demoFull(env: NodeJS.ProcessEnv = process.env): boolean {
  return env['LINKGATE_DEMO_FULL'] !== '0';
}

/** The lab for the demo: `guests` routed guests, plus (full) one bridged, one IPv6, two overlapping tenant guests. */
export function demoLabOptions(guests: number, full: boolean): LabOptions {
  if (!full) return { guests };
  return {
    guests: guests + 4,
    bridged: [guests + 1],
    ipv6: [guests + 2],
    networks: ['tenant-a', 'tenant-b'],
    tenants: [guests + 3, guests + 4],
    overlap: true,
  };
}

/** The table's route column: how the guest reaches the metadata address. */
function routeOf(g: GuestInfo, ipv6: boolean): string {
  if (ipv6) return 'onlink v6';
  return g.bridge !== undefined ? `bridge ${g.bridge}` : g.mode;
}

export async function runDemo(opts: { guests: number }): Promise<number> {
  installLabSafetyNet();
  let lab: Lab | undefined;
  let daemon: DaemonProc | undefined;
  let ok = true;
  try {
    const full = demoFull();
    const extra = full ? ' (plus a bridged, an IPv6 and two overlapping tenant-network guests)' : '';
    say(`linkgate demo: ${opts.guests} guests${extra} in network namespaces, the daemon in their hypervisor namespace\n`);
    lab = await createLab(demoLabOptions(opts.guests, full));
    const config = lab.config();
    const configPath = await lab.writeConfig(config);
    say(`lab ${lab.prefix}: hypervisor namespace ${lab.hv}, config ${configPath}`);
    daemon = await startDaemon(lab, configPath);
    say(`daemon ready (pid ${daemon.pid})\n`);

    const rows: Row[] = [];
    for (const g of lab.guests()) {
      const expected = config.instances[g.index - 1]?.id ?? '?';
      const v6 = g.ipv6 !== undefined;
      const r = await lab.curl(g.index, '/latest/meta-data/instance-id', { ipv6: v6 });
      const got = r.status === 200 ? r.body : r.status ? `HTTP ${r.status}` : 'no answer';
      const good = r.status === 200 && r.body === expected;
      ok &&= good;
      rows.push({
        guest: g.ns,
        port: g.network !== undefined ? `${g.hostIf} (${g.network})` : g.hostIf,
        mac: g.mac,
        ip: v6 && g.ipv6 !== undefined ? g.ipv6 : g.ipv4,
        route: routeOf(g, v6),
        expected,
        got,
        verdict: good ? 'own id' : 'WRONG',
      });
    }

    // IMDSv2 from guest 1: token PUT, then a read with the token.
    const tok = await lab.curl(1, '/latest/api/token', { method: 'PUT', headers: { 'X-aws-ec2-metadata-token-ttl-seconds': '60' } });
    const v2 = await lab.curl(1, '/latest/meta-data/hostname', { headers: { 'X-aws-ec2-metadata-token': tok.body } });
    const v2ok = tok.status === 200 && v2.status === 200 && v2.body === config.instances[0]?.hostname;
    ok &&= v2ok;
    const g1 = lab.guest(1);
    rows.push({
      guest: g1.ns,
      port: g1.hostIf,
      mac: g1.mac,
      ip: g1.ipv4,
      route: g1.mode,
      expected: `IMDSv2 ${config.instances[0]?.hostname ?? '?'}`,
      got: v2.status === 200 ? v2.body : `HTTP ${v2.status}`,
      verdict: v2ok ? 'token ok' : 'WRONG',
    });

    // Spoofing: the last routed guest takes guest 1's MAC and IP on its own port.
    const spoofer = lab.guest(opts.guests);
    if (spoofer.index !== 1) {
      await lab.exec(spoofer.index, ['ip', 'link', 'set', 'eth0', 'address', g1.mac]);
      await lab.exec(spoofer.index, ['ip', 'addr', 'flush', 'dev', 'eth0']);
      await lab.exec(spoofer.index, ['ip', 'addr', 'add', `${g1.ipv4}/${g1.prefixLen}`, 'dev', 'eth0']);
      await lab.exec(spoofer.index, ['ip', 'route', 'replace', `${METADATA_IPV4}/32`, 'dev', 'eth0']);
      const s = await lab.curl(spoofer.index, '/latest/meta-data/instance-id', { timeoutS: 2 });
      const refused = s.status === 0 || s.status === 403;
      ok &&= refused;
      rows.push({
        guest: spoofer.ns,
        port: spoofer.hostIf,
        mac: `${g1.mac} (forged)`,
        ip: `${g1.ipv4} (forged)`,
        route: 'onlink',
        expected: 'nothing',
        got: s.status ? `HTTP ${s.status}: ${s.body.trim()}` : 'no answer (dropped in the kernel)',
        verdict: refused ? 'refused' : 'LEAKED',
      });
    }

    say(table(rows));
    const stats = (await adminGet(config.admin.socket, '/v1/stats').catch(() => undefined))?.body as
      { kernel?: Record<string, number> } | undefined;
    if (stats?.kernel) say(`\nkernel counters: ${JSON.stringify(stats.kernel)}`);
    say(ok ? '\nevery guest got its own identity; the forged one got nothing' : '\nSOMETHING IS WRONG: see the table');
  } catch (err) {
    ok = false;
    process.stderr.write(`demo failed: ${err instanceof Error ? err.message : String(err)}\n`);
  } finally {
    if (daemon) {
      const exit = await daemon.stop();
      say(`daemon stopped (exit ${exit.code ?? exit.signal})`);
    }
    if (lab) {
      await lab.down();
      say(`lab ${lab.prefix} removed`);
    }
  }
  return ok ? 0 : 1;
}
