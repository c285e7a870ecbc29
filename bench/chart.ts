// The benchmark chart (issue 4 item 4): one SVG, hand-written, no dependencies, from a results JSON of
// `npm run bench`: grouped bars per configuration, wgts next to wireguard-go with their values and the ratio
// under each group, so the comparison is readable at a glance. `npm run bench` writes it next to the JSON;
// `node dist/bench/chart.js bench/results/<file>.json [out.svg]` charts any (also older) results file.

import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

type Medians = Record<string, number | null | undefined>;

/** The part of a results file the chart reads; older files lack some medians and `system`. */
export interface ChartInput {
  date: string;
  machine?: string;
  system?: { cores: number; cpuModel: string; kernel: string; node: string };
  quick?: boolean;
  tunnel: { rounds: number; seconds: number; medians: Record<string, Medians> } | null;
}

export interface Bar {
  series: string;
  value: number;
  /** A second line under the value (e.g. loss). */
  note?: string;
}
export interface Group {
  label: string;
  /** Under the label: the wgts/wg-go ratio when both are there. */
  sublabel?: string;
  bars: Bar[];
}
export interface Panel {
  title: string;
  groups: Group[];
  /** A dashed line across the panel, e.g. wireguard-go's figure for the wgts worker-scaling bars. */
  reference?: { label: string; value: number };
  /** Shown instead of bars when no group has a value. */
  empty: string;
}

const TS = 'wgts<->wgts';
const GO = 'wggo<->wggo';
const MIX = 'wgts<->wggo';
/** Display names and colours of the series (configurations). */
export const SERIES: { key: string; label: string; color: string }[] = [
  { key: TS, label: 'wgts <-> wgts', color: '#2f6db5' },
  { key: GO, label: 'wireguard-go <-> wireguard-go', color: '#e0821e' },
  { key: MIX, label: 'wgts <-> wireguard-go (mixed pair)', color: '#5a9a4a' },
];
const THREADS = [1, 2, 4];
const threadsConfig = (n: number) => `${TS} threads=${n}`;

const finite = (x: number | null | undefined): x is number => typeof x === 'number' && Number.isFinite(x);

/** 3 significant-ish digits: 1234, 123, 12.3, 1.23. */
export function formatValue(v: number): string {
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
}

const ratioLabel = (a: number | null | undefined, b: number | null | undefined) =>
  finite(a) && finite(b) && b !== 0 ? `wgts/wg-go ${(a / b).toFixed(2)}x` : undefined;

/** The panels of one results object: throughput, packets per second, worker scaling, CPU, GC, RTT. */
export function panelsFrom(input: ChartInput): Panel[] {
  const med = input.tunnel?.medians ?? {};
  const get = (config: string, key: string) => med[config]?.[key];
  const three = (label: string, key: string, scale = 1, note?: (config: string) => string | undefined): Group => {
    const bars: Bar[] = [];
    for (const s of SERIES) {
      const v = get(s.key, key);
      if (finite(v)) bars.push({ series: s.key, value: v * scale, note: note?.(s.key) });
    }
    return { label, sublabel: ratioLabel(get(TS, key), get(GO, key)), bars };
  };
  const sizes = [...new Set(Object.values(med).flatMap((m) => Object.keys(m ?? {})))]
    .map((k) => /^udp(\d+)_pps$/.exec(k))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => Number(m[1]))
    .sort((a, b) => a - b);
  const largest = sizes[sizes.length - 1];
  const loss = (n: number) => (config: string) => {
    const l = get(config, `udp${n}_loss_pct`);
    return finite(l) ? `loss ${l.toFixed(0)}%` : undefined;
  };
  const scalingGroups = (key: string): Group[] =>
    THREADS.map((n) => {
      const v = get(threadsConfig(n), key);
      return { label: `${n} worker${n > 1 ? 's' : ''}`, sublabel: ratioLabel(v, get(GO, key)), bars: finite(v) ? [{ series: TS, value: v }] : [] };
    });
  const goTcp = get(GO, 'tcp1_ab_mbps');
  const gcGroup = (label: string, config: string, series: string): Group => {
    const v = get(config, 'gc_ms_per_gb');
    const perSecond = get(config, 'gc_ms_per_s');
    return { label, bars: finite(v) ? [{ series, value: v, note: finite(perSecond) ? `${formatValue(perSecond)} ms/s` : undefined }] : [] };
  };
  return [
    {
      title: 'Throughput through the tunnel, Mbit/s (higher is better)',
      groups: [
        three('TCP a->b', 'tcp1_ab_mbps'),
        three('TCP b->a', 'tcp1_ba_mbps'),
        three('TCP 4 streams', 'tcp4_ab_mbps'),
        three('UDP 1372 B', 'udp_ab_mbps'),
      ],
      empty: 'no throughput figures in this results file',
    },
    {
      title: 'UDP packets per second delivered, thousands (higher is better)',
      groups: sizes.map((n) => three(n === largest ? `${n} B (max in MTU)` : `${n} B`, `udp${n}_pps`, 1e-3, loss(n))),
      empty: 'not measured in this run (results older than the packets-per-second runs)',
    },
    {
      title: 'wgts crypto workers: TCP 1 stream a->b, Mbit/s (higher is better)',
      groups: scalingGroups('tcp1_ab_mbps'),
      reference: finite(goTcp) ? { label: `wireguard-go ${formatValue(goTcp)}`, value: goTcp } : undefined,
      empty: 'no worker-scaling runs in this results file',
    },
    {
      title: 'Daemon CPU per GB, TCP runs, CPU s/GB (lower is better)',
      groups: [three('default workers', 'cpu_s_per_gb'), ...scalingGroups('cpu_s_per_gb')],
      empty: 'no CPU figures in this results file',
    },
    {
      title: 'wgts main-thread GC per GB, TCP runs, ms/GB (lower is better)',
      groups: [gcGroup('wgts<->wgts', TS, TS), gcGroup('mixed (wgts side)', MIX, MIX), ...THREADS.map((n) => gcGroup(`${n} worker${n > 1 ? 's' : ''}`, threadsConfig(n), TS))],
      empty: 'not measured in this run (results older than the GC probe)',
    },
    {
      title: 'ping RTT through the idle tunnel, ms (lower is better)',
      groups: [three('average RTT', 'rtt_ms')],
      empty: 'no RTT figures in this results file',
    },
  ];
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** A round axis top and step for values up to max (at most 5 intervals). */
export function niceScale(max: number): { top: number; step: number } {
  if (!(max > 0)) return { top: 1, step: 0.2 };
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  return { top: Math.ceil(max / step) * step, step };
}

/** Decimals that print every multiple of step exactly (0.25 -> 2, 2.5 -> 1, 500 -> 0). */
export function decimalsOf(step: number): number {
  for (let d = 0; d < 6; d++) {
    const x = step * 10 ** d;
    if (Math.abs(x - Math.round(x)) < 1e-6) return d;
  }
  return 6;
}

const color = (series: string) => SERIES.find((s) => s.key === series)?.color ?? '#888';

const PANEL_W = 620;
const PANEL_H = 330;
const GAP = 20;

function renderPanel(p: Panel, index: number, x0: number, y0: number): string {
  const out: string[] = [];
  const left = x0 + 56;
  const right = x0 + PANEL_W - 12;
  const top = y0 + 44;
  const bottom = y0 + PANEL_H - 52;
  out.push(`<rect x="${x0}" y="${y0}" width="${PANEL_W}" height="${PANEL_H}" fill="#fff" stroke="#ccc"/>`);
  out.push(`<text x="${x0 + 12}" y="${y0 + 24}" font-size="15" font-weight="bold">${esc(p.title)}</text>`);
  const values = p.groups.flatMap((g) => g.bars.map((b) => b.value));
  if (!values.length) {
    out.push(`<text x="${x0 + PANEL_W / 2}" y="${y0 + PANEL_H / 2}" font-size="13" fill="#777" text-anchor="middle">${esc(p.empty)}</text>`);
    return out.join('\n');
  }
  // Headroom for the value labels above the tallest bar.
  const { top: vmax, step } = niceScale(Math.max(...values, p.reference?.value ?? 0) * 1.15);
  const y = (v: number) => bottom - (Math.max(v, 0) / vmax) * (bottom - top);
  const axisDigits = decimalsOf(step);
  for (let i = 0; i * step <= vmax + step / 2; i++) {
    const v = i * step;
    out.push(`<line x1="${left}" y1="${y(v).toFixed(1)}" x2="${right}" y2="${y(v).toFixed(1)}" stroke="${v === 0 ? '#444' : '#e4e4e4'}"/>`);
    out.push(`<text x="${left - 6}" y="${(y(v) + 4).toFixed(1)}" font-size="11" fill="#555" text-anchor="end">${v.toFixed(axisDigits)}</text>`);
  }
  const groupW = (right - left) / p.groups.length;
  const perGroup = Math.max(...p.groups.map((g) => g.bars.length), 1);
  const barW = Math.min(56, (groupW - 16) / perGroup);
  p.groups.forEach((g, gi) => {
    const cx = left + groupW * (gi + 0.5);
    const start = cx - (barW * g.bars.length) / 2;
    g.bars.forEach((b, bi) => {
      const bx = start + bi * barW;
      const by = y(b.value);
      out.push(
        `<rect class="bar" data-panel="${index}" data-group="${esc(g.label)}" data-series="${esc(b.series)}" data-value="${b.value}" x="${(bx + 2).toFixed(1)}" y="${by.toFixed(1)}" width="${(barW - 4).toFixed(1)}" height="${(bottom - by).toFixed(1)}" fill="${color(b.series)}"/>`,
      );
      const tx = (bx + barW / 2).toFixed(1);
      const noteY = by - 4;
      if (b.note) out.push(`<text x="${tx}" y="${noteY.toFixed(1)}" font-size="9" fill="#666" text-anchor="middle">${esc(b.note)}</text>`);
      out.push(`<text class="value" x="${tx}" y="${(b.note ? noteY - 11 : noteY).toFixed(1)}" font-size="11" text-anchor="middle">${esc(formatValue(b.value))}</text>`);
    });
    out.push(`<text class="group" x="${cx.toFixed(1)}" y="${bottom + 18}" font-size="12" text-anchor="middle">${esc(g.label)}</text>`);
    if (g.sublabel) out.push(`<text x="${cx.toFixed(1)}" y="${bottom + 34}" font-size="11" fill="#555" text-anchor="middle">${esc(g.sublabel)}</text>`);
  });
  if (p.reference) {
    const ry = y(p.reference.value).toFixed(1);
    out.push(`<line class="reference" x1="${left}" y1="${ry}" x2="${right}" y2="${ry}" stroke="${color(GO)}" stroke-width="2" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${right - 4}" y="${(Number(ry) - 5).toFixed(1)}" font-size="11" fill="${color(GO)}" text-anchor="end">${esc(p.reference.label)}</text>`);
  }
  return out.join('\n');
}

/** "2 cores, AMD EPYC, kernel 6.1.0, Node v20" from `system` (new files) or the older `machine` string. */
export function machineLine(input: ChartInput): string {
  if (input.system) {
    const s = input.system;
    return `${s.cores} cores, ${s.cpuModel}, kernel ${s.kernel}, Node ${s.node}`;
  }
  const m = /^(\d+) x (.*), Node (\S+)$/.exec(input.machine ?? '');
  return m ? `${m[1]} cores, ${m[2]}, kernel not recorded, Node ${m[3]}` : input.machine ?? 'machine not recorded';
}

export function renderChart(input: ChartInput): string {
  const panels = panelsFrom(input);
  const cols = 2;
  const rows = Math.ceil(panels.length / cols);
  const headH = 96;
  const width = cols * PANEL_W + (cols + 1) * GAP;
  const height = headH + rows * (PANEL_H + GAP) + GAP;
  const t = input.tunnel;
  const date = input.date.replace('T', ' ').replace(/:\d\d\.\d+Z$/, ' UTC');
  const how = t ? `medians of ${t.rounds} round(s), iperf3 -t ${t.seconds}, configurations alternating${input.quick ? ' (--quick)' : ''}` : 'no tunnel benchmark in this run';
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Arial, sans-serif">`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#f6f6f6"/>`,
    `<text class="title" x="${GAP}" y="32" font-size="20" font-weight="bold">${esc(`wgts vs wireguard-go, ${date}`)}</text>`,
    `<text x="${GAP}" y="54" font-size="13" fill="#333">${esc(`${machineLine(input)}; ${how}`)}</text>`,
  ];
  let lx = GAP;
  for (const s of SERIES) {
    out.push(`<rect x="${lx}" y="68" width="14" height="14" fill="${s.color}"/>`);
    out.push(`<text x="${lx + 20}" y="80" font-size="12">${esc(s.label)}</text>`);
    lx += 28 + s.label.length * 7;
  }
  out.push(`<line x1="${lx}" y1="75" x2="${lx + 28}" y2="75" stroke="${color(GO)}" stroke-width="2" stroke-dasharray="6 4"/>`);
  out.push(`<text x="${lx + 34}" y="80" font-size="12">${esc('wireguard-go reference (worker panel)')}</text>`);
  panels.forEach((p, i) => out.push(renderPanel(p, i, GAP + (i % cols) * (PANEL_W + GAP), headH + Math.floor(i / cols) * (PANEL_H + GAP))));
  out.push('</svg>');
  return out.join('\n') + '\n';
}

/** bench/results/x.json -> bench/results/x.svg */
export const chartPathFor = (json: string): string => json.replace(/\.json$/, '') + '.svg';

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [file, outFile] = process.argv.slice(2);
  if (!file) {
    console.error('usage: node dist/bench/chart.js bench/results/<file>.json [out.svg]');
    process.exit(2);
  }
  const input = JSON.parse(readFileSync(file, 'utf8')) as ChartInput;
  const target = outFile ?? chartPathFor(file);
  writeFileSync(target, renderChart(input));
  console.log(`wrote ${target}`);
}
