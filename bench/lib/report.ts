/** The suite's outputs: a markdown table, the raw JSON, and a hand-written SVG chart. */
import type { MachineInfo } from './machine.js';
import type { PeerName } from './peers.js';

export const PEER_LABEL: Readonly<Record<PeerName, string>> = {
  nginx: 'nginx',
  haproxy: 'haproxy→nginx',
  linkgate: 'linkgate',
};

/** One scenario × peer figure (medians over the rounds). */
export interface Row {
  readonly scenario: string;
  readonly peer: PeerName;
  /** Requests per second (median over rounds); NaN when not measured. */
  readonly rps: number;
  readonly p50_us: number;
  readonly p99_us: number;
  /** Socket errors + non-2xx + wrong bodies, summed over rounds. */
  readonly errors: number;
  readonly rounds: number;
  readonly note: string;
}

export interface Target {
  readonly what: string;
  readonly goal: string;
  readonly measured: string;
  /** undefined: not measured in this run. */
  readonly met: boolean | undefined;
}

export interface Extra {
  readonly title: string;
  readonly lines: readonly string[];
}

export interface Report {
  readonly machine: MachineInfo;
  readonly mode: string;
  readonly settings: string;
  readonly rows: readonly Row[];
  readonly targets: readonly Target[];
  readonly extras: readonly Extra[];
  readonly skipped: readonly string[];
}

const fmtInt = (n: number): string => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–');

export function fmtUs(us: number): string {
  if (!Number.isFinite(us)) return '–';
  if (us >= 1000) return `${(us / 1000).toFixed(us >= 10_000 ? 0 : 1)} ms`;
  return `${Math.round(us)} µs`;
}

export const fmtRatio = (r: number): string => (Number.isFinite(r) ? `${r.toFixed(2)}×` : '–');

function mdTable(head: readonly string[], rows: readonly (readonly string[])[]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => `| ${cells.map((c, i) => c.padEnd(w[i] ?? 0)).join(' | ')} |`;
  return [line(head), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

/** The scenario table alone (printed, and the first table of latest.md). */
export function scenarioTable(rows: readonly Row[]): string {
  const ratioTo = (r: Row, peer: PeerName): string => {
    const base = rows.find((x) => x.scenario === r.scenario && x.peer === peer);
    if (r.peer !== 'linkgate' || base === undefined || !(base.rps > 0)) return '';
    return fmtRatio(r.rps / base.rps);
  };
  return mdTable(
    ['scenario', 'peer', 'req/s', 'p50', 'p99', 'errors', 'vs nginx', 'vs haproxy', 'note'],
    rows.map((r) => [
      r.scenario,
      PEER_LABEL[r.peer],
      fmtInt(r.rps),
      fmtUs(r.p50_us),
      fmtUs(r.p99_us),
      String(r.errors),
      ratioTo(r, 'nginx'),
      ratioTo(r, 'haproxy'),
      r.note,
    ]),
  );
}

export function targetTable(targets: readonly Target[]): string {
  return mdTable(
    ['target (issue 6)', 'goal', 'measured', 'met'],
    targets.map((t) => [t.what, t.goal, t.measured, t.met === undefined ? 'not measured' : t.met ? 'yes' : 'NO']),
  );
}

export function markdown(r: Report): string {
  const m = r.machine;
  const out = [
    '# linkgate benchmark results',
    '',
    `${r.mode} run, ${m.date}; commit ${m.commit}${m.dirty ? ' (with uncommitted changes)' : ''}.`,
    `Machine: ${m.nproc} CPUs (${m.cpu}), ${m.mem_mb} MB, kernel ${m.kernel}, node ${m.node}.`,
    `Settings: ${r.settings}.`,
    '',
    'Every figure is the median over the rounds (peers alternate: nginx, haproxy→nginx, linkgate, nginx, …),',
    'measured from inside guest namespaces over the guest path (guest → veth → 169.254.169.254:80 in the',
    'hypervisor namespace). Ratios are linkgate ÷ peer in the same run; absolute numbers move with machine load.',
    '',
    scenarioTable(r.rows),
    '',
    '## Targets',
    '',
    targetTable(r.targets),
  ];
  for (const e of r.extras) out.push('', `## ${e.title}`, '', ...e.lines);
  if (r.skipped.length) out.push('', '## Skipped', '', ...r.skipped.map((s) => `- ${s}`));
  out.push('', '![throughput and latency per scenario and peer](latest.svg)', '');
  return out.join('\n');
}

// ---- SVG -------------------------------------------------------------------------------------

const COLORS: Readonly<Record<PeerName, string>> = { nginx: '#4c78a8', haproxy: '#f58518', linkgate: '#54a24b' };

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Two panels: requests/s per scenario and peer (linear), and p50 / p99 latency (log scale, p99
 * the light bar behind the p50 one). Scenarios with one peer only get one bar.
 */
export function svgChart(rows: readonly Row[], title: string): string {
  const scenarios = [...new Set(rows.map((r) => r.scenario))];
  const peers = (['nginx', 'haproxy', 'linkgate'] as const).filter((p) => rows.some((r) => r.peer === p));
  const W = 980;
  const left = 70;
  const right = 20;
  const panelH = 230;
  const top1 = 60;
  const top2 = top1 + panelH + 110;
  const H = top2 + panelH + 120;
  const groupW = (W - left - right) / Math.max(1, scenarios.length);
  const barW = Math.min(34, (groupW - 16) / Math.max(1, peers.length));
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="#fff"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  );
  peers.forEach((p, i) => {
    const x = left + i * 150;
    parts.push(
      `<rect x="${x}" y="32" width="12" height="12" fill="${COLORS[p]}"/>`,
      `<text x="${x + 16}" y="42">${esc(PEER_LABEL[p])}</text>`,
    );
  });

  const xOf = (si: number, pi: number): number => left + si * groupW + (groupW - barW * peers.length) / 2 + pi * barW;
  const labels = (top: number): void => {
    scenarios.forEach((s, si) => {
      const cx = left + si * groupW + groupW / 2;
      const words = s.split(' ');
      const lines: string[] = [];
      for (const w of words) {
        const last = lines[lines.length - 1];
        if (last !== undefined && (last + ' ' + w).length <= 16) lines[lines.length - 1] = `${last} ${w}`;
        else lines.push(w);
      }
      lines
        .slice(0, 4)
        .forEach((l, k) => parts.push(`<text x="${cx}" y="${top + panelH + 16 + k * 13}" text-anchor="middle">${esc(l)}</text>`));
    });
  };

  // Panel 1: throughput
  const maxRps = Math.max(1, ...rows.map((r) => (Number.isFinite(r.rps) ? r.rps : 0)));
  const step = niceStep(maxRps / 5);
  const yMax = Math.ceil(maxRps / step) * step;
  parts.push(`<text x="${left}" y="${top1 - 6}" font-weight="bold">requests per second (median of rounds)</text>`);
  for (let v = 0; v <= yMax; v += step) {
    const y = top1 + panelH - (v / yMax) * panelH;
    parts.push(
      `<line x1="${left}" x2="${W - right}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${v >= 1000 ? `${v / 1000}k` : v}</text>`,
    );
  }
  scenarios.forEach((s, si) => {
    peers.forEach((p, pi) => {
      const r = rows.find((x) => x.scenario === s && x.peer === p);
      if (r === undefined || !Number.isFinite(r.rps)) return;
      const h = (r.rps / yMax) * panelH;
      const x = xOf(si, pi);
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${(top1 + panelH - h).toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${h.toFixed(1)}" fill="${COLORS[p]}"><title>${esc(`${s} · ${PEER_LABEL[p]}: ${Math.round(r.rps)} req/s`)}</title></rect>`,
      );
    });
  });
  parts.push(`<line x1="${left}" x2="${W - right}" y1="${top1 + panelH}" y2="${top1 + panelH}" stroke="#333"/>`);
  labels(top1);

  // Panel 2: latency, log scale from 10 µs to the largest p99
  const maxUs = Math.max(1000, ...rows.map((r) => (Number.isFinite(r.p99_us) ? r.p99_us : 0)));
  const lo = 10;
  const hiExp = Math.ceil(Math.log10(maxUs));
  const yLat = (us: number): number => top2 + panelH - ((Math.log10(Math.max(lo, us)) - 1) / (hiExp - 1)) * panelH;
  parts.push(`<text x="${left}" y="${top2 - 6}" font-weight="bold">latency: p50 (dark) and p99 (light), log scale</text>`);
  for (let e = 1; e <= hiExp; e++) {
    const y = yLat(10 ** e);
    const label = e < 3 ? `${10 ** e} µs` : e < 6 ? `${10 ** (e - 3)} ms` : `${10 ** (e - 6)} s`;
    parts.push(
      `<line x1="${left}" x2="${W - right}" y1="${y}" y2="${y}" stroke="#ddd"/>`,
      `<text x="${left - 6}" y="${y + 4}" text-anchor="end">${label}</text>`,
    );
  }
  const y1ms = yLat(1000);
  parts.push(
    `<line x1="${left}" x2="${W - right}" y1="${y1ms}" y2="${y1ms}" stroke="#c00" stroke-dasharray="4 3"/>`,
    `<text x="${W - right}" y="${y1ms - 3}" text-anchor="end" fill="#c00">1 ms</text>`,
  );
  scenarios.forEach((s, si) => {
    peers.forEach((p, pi) => {
      const r = rows.find((x) => x.scenario === s && x.peer === p);
      if (r === undefined || !Number.isFinite(r.p50_us)) return;
      const x = xOf(si, pi);
      const base = top2 + panelH;
      const y99 = yLat(r.p99_us);
      const y50 = yLat(r.p50_us);
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${y99.toFixed(1)}" width="${(barW - 2).toFixed(1)}" height="${(base - y99).toFixed(1)}" fill="${COLORS[p]}" opacity="0.35"><title>${esc(`${s} · ${PEER_LABEL[p]}: p99 ${fmtUs(r.p99_us)}`)}</title></rect>`,
        `<rect x="${(x + 4).toFixed(1)}" y="${y50.toFixed(1)}" width="${Math.max(1, barW - 10).toFixed(1)}" height="${(base - y50).toFixed(1)}" fill="${COLORS[p]}"><title>${esc(`${s} · ${PEER_LABEL[p]}: p50 ${fmtUs(r.p50_us)}`)}</title></rect>`,
      );
    });
  });
  parts.push(`<line x1="${left}" x2="${W - right}" y1="${top2 + panelH}" y2="${top2 + panelH}" stroke="#333"/>`);
  labels(top2);
  parts.push('</svg>', '');
  return parts.join('\n');
}

function niceStep(x: number): number {
  const e = 10 ** Math.floor(Math.log10(Math.max(1, x)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * e >= x) return m * e;
  return 10 * e;
}
