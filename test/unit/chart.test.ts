// The benchmark chart (issue 4 item 4): bench/chart.ts turns a results object into an SVG. Checked at the
// parse level: well-formed (balanced tags, escaped text), one bar per measured value with heights in
// proportion, the labels, ratios and title a reader needs, and older results files without the new figures.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decimalsOf, niceScale, renderChart, type ChartInput } from '../../bench/chart.js';

const TS = 'wgts<->wgts';
const GO = 'wggo<->wggo';
const MIX = 'wgts<->wggo';

function fixture(): ChartInput {
  return {
    date: '2026-11-22T17:05:20.425Z',
    system: { cores: 2, cpuModel: 'Test CPU <9000> & co', kernel: '6.1.0-test', node: 'v20.20.2' },
    quick: false,
    tunnel: {
      rounds: 3,
      seconds: 5,
      medians: {
        [TS]: {
          tcp1_ab_mbps: 800, tcp1_ba_mbps: 700, tcp4_ab_mbps: 900, udp_ab_mbps: 350, rtt_ms: 0.5, cpu_s_per_gb: 17,
          udp64_pps: 150_000, udp64_loss_pct: 40, udp512_pps: 120_000, udp512_loss_pct: 30, udp1392_pps: 60_000, udp1392_loss_pct: 20,
          gc_ms_per_gb: 12.5,
        },
        [GO]: {
          tcp1_ab_mbps: 1000, tcp1_ba_mbps: 1000, tcp4_ab_mbps: 1000, udp_ab_mbps: null, rtt_ms: 0.25, cpu_s_per_gb: 13,
          udp64_pps: 300_000, udp64_loss_pct: 10, udp512_pps: 200_000, udp512_loss_pct: 5, udp1392_pps: 80_000, udp1392_loss_pct: 1,
          gc_ms_per_gb: null,
        },
        [MIX]: { tcp1_ab_mbps: 450, tcp1_ba_mbps: 1080, tcp4_ab_mbps: 500, udp_ab_mbps: 250, rtt_ms: 0.7, cpu_s_per_gb: 19, gc_ms_per_gb: 20 },
        [`${TS} threads=1`]: { tcp1_ab_mbps: 830, cpu_s_per_gb: 17.3, gc_ms_per_gb: 11 },
        [`${TS} threads=2`]: { tcp1_ab_mbps: 910, cpu_s_per_gb: 16.3, gc_ms_per_gb: 10 },
        [`${TS} threads=4`]: { tcp1_ab_mbps: 890, cpu_s_per_gb: null, gc_ms_per_gb: 9 },
      },
    },
  };
}

/** Checks the tags nest and close, and that no bare '<' or '&' is left in text; returns the element names in order. */
function parseTags(svg: string): string[] {
  const names: string[] = [];
  const stack: string[] = [];
  const re = /<(\/?)([A-Za-z][\w-]*)((?:\s+[\w:-]+="[^"<>]*")*)\s*(\/?)>/g;
  let last = 0;
  for (let m = re.exec(svg); m; m = re.exec(svg)) {
    const text = svg.slice(last, m.index);
    assert.doesNotMatch(text, /[<>]/, `stray angle bracket before offset ${m.index}: ${JSON.stringify(text.slice(0, 80))}`);
    assert.doesNotMatch(text, /&(?!(amp|lt|gt|quot);)/, `unescaped & in ${JSON.stringify(text)}`);
    last = re.lastIndex;
    const [, close, name, , self] = m;
    if (close) assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else {
      names.push(name);
      if (!self) stack.push(name);
    }
  }
  assert.equal(svg.slice(last).trim(), '', 'text after the last tag');
  assert.deepEqual(stack, [], 'unclosed elements');
  return names;
}

const attr = (tag: string, name: string) => new RegExp(`\\s${name}="([^"]*)"`).exec(tag)?.[1];
const bars = (svg: string) => [...svg.matchAll(/<rect class="bar"[^>]*>/g)].map((m) => m[0]);
const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g)].map((m) => m[1]);

test('the chart is well-formed SVG with exactly one root element', () => {
  const svg = renderChart(fixture());
  const names = parseTags(svg);
  assert.equal(names[0], 'svg');
  assert.equal(names.filter((n) => n === 'svg').length, 1);
  assert.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="\d+" height="\d+"/);
});

test('one bar per measured value, none for null or missing ones, heights in proportion', () => {
  const input = fixture();
  const svg = renderChart(input);
  const all = bars(svg);
  // throughput 3+3+3+2 (no wg-go UDP), pps 2+2+2 (no mixed), workers 3, CPU 3+2 (no 4-thread figure),
  // GC 1+1+3 (wgts sides only), RTT 3
  assert.equal(all.length, 11 + 6 + 3 + 5 + 5 + 3);
  const keyed = new Map(all.map((b) => [`${attr(b, 'data-panel')}|${attr(b, 'data-group')}|${attr(b, 'data-series')}`, b]));
  assert.equal(keyed.size, all.length, 'a group has two bars of one series');
  const a = keyed.get('0|TCP a-&gt;b|wgts&lt;-&gt;wgts');
  const b = keyed.get('0|TCP a-&gt;b|wggo&lt;-&gt;wggo');
  assert.ok(a && b, [...keyed.keys()].join('\n'));
  assert.equal(Number(attr(a, 'data-value')), 800);
  assert.ok(Math.abs(Number(attr(a, 'height')) / Number(attr(b, 'height')) - 0.8) < 0.01);
  // Bars of one panel stand on one baseline.
  assert.equal((Number(attr(a, 'y')) + Number(attr(a, 'height'))).toFixed(0), (Number(attr(b, 'y')) + Number(attr(b, 'height'))).toFixed(0));
  const pps64 = all.filter((x) => attr(x, 'data-group') === '64 B').map((x) => Number(attr(x, 'data-value')));
  assert.deepEqual(pps64.sort((x, y) => x - y), [150, 300], 'pps are drawn in thousands');
});

test('labels, values, ratios, losses and the title with date and machine are present', () => {
  const t = texts(renderChart(fixture()));
  for (const label of ['TCP a-&gt;b', 'TCP b-&gt;a', 'TCP 4 streams', 'UDP 1372 B', '64 B', '512 B', '1392 B (max in MTU)', '1 worker', '4 workers', 'average RTT']) {
    assert.ok(t.includes(label), `group label ${label} missing`);
  }
  for (const value of ['800', '1000', '450', '150', '12.5', '0.50', '0.25']) assert.ok(t.includes(value), `value ${value} missing`);
  assert.ok(t.includes('wgts/wg-go 0.80x'), 'TCP a->b ratio');
  assert.ok(t.includes('wgts/wg-go 0.50x'), '64 B pps ratio');
  assert.ok(t.includes('loss 40%') && t.includes('loss 1%'));
  assert.ok(t.includes('wireguard-go 1000'), 'the worker panel reference line label');
  assert.ok(t.some((x) => x === 'wgts vs wireguard-go, 2026-11-22 17:05 UTC'));
  assert.ok(t.some((x) => x.startsWith('2 cores, Test CPU &lt;9000&gt; &amp; co, kernel 6.1.0-test, Node v20.20.2; medians of 3 round(s), iperf3 -t 5')));
});

test('an older results file without pps, GC or system still charts, saying what is missing', () => {
  const old = fixture();
  delete old.system;
  old.machine = '2 x AMD EPYC, Node v20.20.2';
  for (const m of Object.values(old.tunnel!.medians)) for (const k of Object.keys(m)) if (/^udp\d+_|^gc_/.test(k)) delete m[k];
  const svg = renderChart(old);
  parseTags(svg);
  const t = texts(svg);
  assert.ok(t.some((x) => x.startsWith('not measured in this run (results older than the packets-per-second runs)')));
  assert.ok(t.some((x) => x.startsWith('not measured in this run (results older than the GC probe)')));
  assert.ok(t.some((x) => x.startsWith('2 cores, AMD EPYC, kernel not recorded, Node v20.20.2')));
  assert.equal(bars(svg).length, 11 + 3 + 5 + 3);
});

test('axis scale: round tops and steps, decimals that print every tick exactly', () => {
  assert.deepEqual(niceScale(1150), { top: 1250, step: 250 });
  assert.deepEqual(niceScale(0.9), { top: 1, step: 0.2 });
  assert.deepEqual(niceScale(0), { top: 1, step: 0.2 });
  for (const max of [0.037, 3.7, 37, 123, 999, 1001, 47_000]) {
    const s = niceScale(max);
    const intervals = Math.round(s.top / s.step);
    assert.ok(s.top >= max && intervals >= 2 && intervals <= 5, `${max}: ${JSON.stringify(s)}`);
  }
  assert.equal(decimalsOf(250), 0);
  assert.equal(decimalsOf(2.5), 1);
  assert.equal(decimalsOf(0.25), 2);
  assert.equal(decimalsOf(0.1), 1);
});
