// The console's statistics view: GET /v1/stats as tables and inline SVG charts, for center
// managers and privacy officers. It runs after app.js (both deferred) and uses its helpers
// (t, label, coded, el, timeOf, getJson, queryOf, showFailure, clearError). Data goes into
// the page only as text; the charts are built with createElementNS, with no inline style
// (the console's Content-Security-Policy forbids it): colours come from app.css classes.
'use strict';

const SVG_NS = 'http://www.w3.org/2000/svg';
// How many colours the chart palette has (classes c0… in app.css); series past it repeat.
const PALETTE_LEN = 15;
// The statistics answer shown last, redrawn when the language changes.
let lastStats = null;

/** The label `key` with each `{name}` replaced by `vars[name]`. */
function fmt(key, vars) {
  return t(key).replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** An SVG element with attributes (no text: use svgText). */
function svg(tag, attrs) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  return e;
}

function svgText(tag, text, attrs) {
  const e = svg(tag, attrs);
  e.textContent = String(text);
  return e;
}

/** A count as the table shows it: the number, or the marker of a suppressed one (null). */
function countCell(value, minCount) {
  const td = el('td', null, { 'data-value': value === null ? 'x' : String(value), class: 'num' });
  if (value === null) {
    td.classList.add('suppressed');
    td.append(el('span', t('st.hidden'), { title: fmt('st.hidden_title', { n: minCount }) }));
  } else {
    td.textContent = String(value);
  }
  return td;
}

/** A duration in seconds as days, hours and minutes; null: too few measured. */
function durationCell(seconds, minCount) {
  if (seconds === null || seconds === undefined) {
    return el('td', fmt('st.too_few', { n: minCount }), { 'data-value': 'x', class: 'num suppressed' });
  }
  const d = Math.floor(seconds / 86400);
  const h = Math.floor((seconds % 86400) / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const parts = [];
  if (d) parts.push(`${d}${t('st.unit_d')}`);
  if (h) parts.push(`${h}${t('st.unit_h')}`);
  if (m) parts.push(`${m}${t('st.unit_m')}`);
  if (!parts.length) parts.push(`${seconds}${t('st.unit_s')}`);
  return el('td', parts.join(' '), { 'data-value': String(seconds), class: 'num' });
}

/** A cell holding `node` (a translated label, a time). */
function tdWith(node) {
  const td = el('td');
  td.append(node);
  return td;
}

/** The cells that name a row: its agency pair (the row's header), type and direction. */
function pairCells(tr, row, withType) {
  tr.append(el('th', row.from, { scope: 'row' }), el('td', row.to));
  if (withType) tr.append(tdWith(coded('type.', row.type)));
  tr.append(tdWith(coded('direction.', row.direction)));
}

/** The name of a row in a legend or a description: `from → to (type, direction)`. */
function pairName(row, withType) {
  const what = [];
  if (withType) what.push(hasLabel(`type.${row.type}`) ? t(`type.${row.type}`) : row.type);
  what.push(hasLabel(`direction.${row.direction}`) ? t(`direction.${row.direction}`) : row.direction);
  return `${row.from} → ${row.to} (${what.join(', ')})`;
}

/** The label of a column named by the node (an outcome or a band): translated if known. */
function columnName(prefix, column) {
  return hasLabel(`${prefix}${column}`) ? t(`${prefix}${column}`) : column;
}

/**
 * A table with a caption, column headers (scope=col), the given rows and a totals row.
 * `head`: the header cells' texts; `rows`: functions filling a <tr>; `totals` fills the
 * footer row after its header. Returns the table; its id is `id`.
 */
function statsTable(id, captionKey, head, rows, totals) {
  const table = el('table', null, { id, class: 'stats' });
  table.append(el('caption', fmt('st.table_of', { what: t(captionKey) })));
  const tr = el('tr');
  for (const h of head) tr.append(h instanceof Node ? h : el('th', h, { scope: 'col' }));
  table.append(el('thead'));
  table.tHead.append(tr);
  const body = el('tbody');
  for (const fill of rows) {
    const row = el('tr');
    fill(row);
    body.append(row);
  }
  table.append(body);
  if (totals) {
    const foot = el('tfoot');
    const row = el('tr');
    totals(row);
    foot.append(row);
    table.append(foot);
  }
  return table;
}

/** A scrollable box for a wide table or chart, reachable by keyboard. */
function scrollBox(child, labelText) {
  const box = el('div', null, { class: 'scroll', tabindex: '0', role: 'region', 'aria-label': labelText });
  box.append(child);
  return box;
}

/** The header cells naming a pair row: from, to, (type,) direction. */
function pairHead(withType) {
  const head = [t('st.from'), t('st.to')];
  if (withType) head.push(t('st.type'));
  head.push(t('st.direction'));
  return head;
}

/** The totals row's header, spanning the cells that name a row. */
function totalsHeader(tr, span) {
  tr.append(el('th', t('st.total'), { scope: 'row', colspan: String(span) }));
}

/** A table of counts per pair row and column (periods, outcomes, bands), with totals. */
function countsTable(id, captionKey, table, columns, withType, minCount) {
  const lead = pairHead(withType);
  return statsTable(
    id,
    captionKey,
    [...lead, ...columns, t('st.total')],
    table.rows.map((row) => (tr) => {
      pairCells(tr, row, withType);
      for (const c of row.counts) tr.append(countCell(c, minCount));
      tr.append(countCell(row.total, minCount));
    }),
    // The outcomes have no column totals (they would let hidden cells be worked out).
    Array.isArray(table.totals)
      ? (tr) => {
          totalsHeader(tr, lead.length);
          for (const c of table.totals) tr.append(countCell(c, minCount));
          tr.append(countCell(table.total, minCount));
        }
      : null,
  );
}

/** Counts how many of `values` are suppressed (null). */
function hiddenCount(values) {
  return values.filter((v) => v === null).length;
}

/** The hatch pattern a chart draws suppressed values with; its id is `${id}-hatch`. */
function hatch(id) {
  const pattern = svg('pattern', { id: `${id}-hatch`, width: 6, height: 6, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
  pattern.append(svg('rect', { width: 6, height: 6, class: 'hatch-bg' }), svg('line', { x1: 0, y1: 0, x2: 0, y2: 6, class: 'hatch-line' }));
  const defs = svg('defs');
  defs.append(pattern);
  return defs;
}

/**
 * An accessible chart: <svg role="img"> named by its <title>, described by its <desc> and
 * by the table that holds the same numbers (`tableId`).
 */
function chartFrame(id, width, height, title, desc, tableId) {
  const root = svg('svg', {
    id,
    class: 'chart',
    role: 'img',
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    'aria-labelledby': `${id}-title`,
    'aria-describedby': `${id}-desc ${tableId}`,
  });
  root.append(svgText('title', title, { id: `${id}-title` }), svgText('desc', desc, { id: `${id}-desc` }), hatch(id));
  return root;
}

/** A bar: a value (class `bar`, coloured by `series`) or a suppressed one (hatched). */
function bar(id, x, y, width, height, series, tip, suppressed) {
  const rect = svg('rect', {
    x, y, width: Math.max(0, width), height: Math.max(0, height),
    class: suppressed ? 'bar suppressed' : `bar c${series % PALETTE_LEN}`,
  });
  if (suppressed) rect.setAttribute('fill', `url(#${id}-hatch)`);
  rect.append(svgText('title', tip));
  return rect;
}

/** A legend below a chart at `top`: one swatch and name per series. */
function legend(root, top, names) {
  names.forEach((name, i) => {
    const y = top + i * 18;
    root.append(svg('rect', { x: 8, y, width: 12, height: 12, class: `swatch c${i % PALETTE_LEN}` }), svgText('text', name, { x: 26, y: y + 10, class: 'legend' }));
  });
}

/** Horizontal gridlines and their values for a vertical scale from 0 to `max`. */
function yAxis(root, left, top, plotH, width, max) {
  const step = niceStep(max);
  for (let v = 0; v <= max; v += step) {
    const y = top + plotH - (v / max) * plotH;
    root.append(svg('line', { x1: left, x2: width - 8, y1: y, y2: y, class: 'grid' }), svgText('text', v, { x: left - 4, y: y + 4, class: 'tick end' }));
  }
}

/** A round step for about five gridlines up to `max`. */
function niceStep(max) {
  const raw = max / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  return [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || mag * 10;
}

/** Chart (a): messages per period by agency pair, grouped bars, one series per row. */
function messagesChart(stats, tableId) {
  const id = 'stats-chart-messages';
  const rows = stats.messages.rows;
  const periods = stats.periods;
  const values = rows.flatMap((r) => r.counts);
  const max = Math.max(stats.min_count, ...values.filter((v) => v !== null));
  const barW = Math.max(2, Math.min(16, Math.floor(480 / Math.max(1, rows.length * periods.length))));
  const groupW = rows.length * barW + 8;
  const left = 44;
  const top = 12;
  const plotH = 180;
  const width = Math.max(480, left + periods.length * groupW + 16);
  const height = top + plotH + 28 + rows.length * 18 + 8;
  const desc = fmt('st.desc_messages', {
    rows: rows.length, periods: periods.length, from: stats.from, to: stats.to,
    total: stats.messages.total === null ? t('st.hidden') : stats.messages.total, hidden: hiddenCount(values),
  });
  const root = chartFrame(id, width, height, t('st.chart_messages'), desc, tableId);
  yAxis(root, left, top, plotH, width, max);
  const every = Math.ceil(periods.length / Math.max(1, Math.floor((width - left) / 64)));
  periods.forEach((p, pi) => {
    const x0 = left + 4 + pi * groupW;
    rows.forEach((row, ri) => {
      const v = row.counts[pi];
      const name = `${p.label} · ${pairName(row, true)}`;
      const h = v === null ? 6 : (v / max) * plotH;
      const tip = `${name}: ${v === null ? t('st.hidden') : v}`;
      root.append(bar(id, x0 + ri * barW, top + plotH - h, barW - 1, h, ri, tip, v === null));
    });
    if (pi % every === 0) root.append(svgText('text', p.label, { x: x0, y: top + plotH + 16, class: 'tick' }));
  });
  legend(root, top + plotH + 28, rows.map((r) => pairName(r, true)));
  return root;
}

/** Chart (b): outcomes of referrals per agency pair, a horizontal stacked bar per row. */
function outcomesChart(stats, tableId) {
  const id = 'stats-chart-outcomes';
  const { rows, columns } = stats.outcomes;
  const values = rows.flatMap((r) => r.counts);
  const known = rows.map((r) => r.counts.reduce((sum, v) => sum + (v === null ? 0 : v), 0));
  const hiddenW = 10;
  const maxHidden = Math.max(0, ...rows.map((r) => hiddenCount(r.counts)));
  const max = Math.max(stats.min_count, ...known);
  const left = 8;
  const top = 8;
  const barH = 18;
  const rowH = 40;
  const plotW = 520;
  const width = left + plotW + maxHidden * hiddenW + 16;
  const height = top + rows.length * rowH + 12 + columns.length * 18 + 8;
  const desc = fmt('st.desc_outcomes', { rows: rows.length, columns: columns.length, hidden: hiddenCount(values) });
  const root = chartFrame(id, width, height, t('st.chart_outcomes'), desc, tableId);
  rows.forEach((row, ri) => {
    const y = top + ri * rowH;
    root.append(svgText('text', pairName(row, false), { x: left, y: y + 11, class: 'tick' }));
    let x = left;
    row.counts.forEach((v, ci) => {
      if (v === null) return;
      const w = (v / max) * plotW;
      root.append(bar(id, x, y + 16, w, barH, ci, `${pairName(row, false)} · ${columnName('outcome.', columns[ci])}: ${v}`, false));
      x += w;
    });
    row.counts.forEach((v, ci) => {
      if (v !== null) return;
      const tip = `${pairName(row, false)} · ${columnName('outcome.', columns[ci])}: ${t('st.hidden')}`;
      root.append(bar(id, x + 2, y + 16, hiddenW - 2, barH, ci, tip, true));
      x += hiddenW;
    });
  });
  legend(root, top + rows.length * rowH + 12, columns.map((c) => columnName('outcome.', c)));
  return root;
}

/** Chart (c): referrals taken on by time to acceptance, one bar per band (the totals). */
function acceptanceChart(stats, tableId) {
  const id = 'stats-chart-acceptance';
  const { columns, totals } = stats.acceptance_distribution;
  const max = Math.max(stats.min_count, ...totals.filter((v) => v !== null));
  const left = 44;
  const top = 12;
  const plotH = 160;
  const barW = 72;
  const width = left + columns.length * (barW + 24) + 16;
  const height = top + plotH + 28;
  const desc = fmt('st.desc_acceptance', {
    shown: columns.map((c, i) => `${columnName('band.', c)}: ${totals[i] === null ? t('st.hidden') : totals[i]}`).join('; '),
    hidden: hiddenCount(totals),
  });
  const root = chartFrame(id, width, height, t('st.chart_acceptance'), desc, tableId);
  yAxis(root, left, top, plotH, width, max);
  columns.forEach((c, i) => {
    const v = totals[i];
    const x = left + 8 + i * (barW + 24);
    const h = v === null ? 6 : (v / max) * plotH;
    root.append(bar(id, x, top + plotH - h, barW, h, 0, `${columnName('band.', c)}: ${v === null ? t('st.hidden') : v}`, v === null));
    root.append(svgText('text', columnName('band.', c), { x: x + barW / 2, y: top + plotH + 16, class: 'tick middle' }));
  });
  return root;
}

/** A section of the result: a heading, what it shows, and a note when cells are hidden. */
function section(headingKey, ...children) {
  const s = el('section', null, { class: 'stats-part' });
  s.append(el('h3', t(headingKey)), ...children);
  return s;
}

/** The explanation of the hidden-value marker, if `values` has one. */
function hiddenNote(values, minCount) {
  if (!values.some((v) => v === null)) return [];
  return [el('p', `${t('st.hidden')}: ${fmt('st.hidden_title', { n: minCount })}`, { class: 'note' })];
}

/** What the answer covers, and from which centers. */
function summary(stats) {
  const list = el('dl', null, { id: 'stats-summary' });
  const row = (key, value) => {
    const dd = el('dd');
    dd.append(value instanceof Node ? value : document.createTextNode(String(value)));
    list.append(el('dt', t(key)), dd);
  };
  row('st.scope', t(`st.scope_${stats.scope}`));
  row('st.period', `${stats.from} – ${stats.to} (${stats.time_zone})`);
  row('st.by', t(`st.by_${stats.by}`));
  row('st.generated_at', timeOf(stats.generated_at));
  return list;
}

/** Which centers answered and when, or why not (the node's words, in English). */
function centersTable(stats) {
  return statsTable(
    'stats-centers',
    'st.centers',
    [t('st.center'), t('st.answered_at'), t('st.counted_since'), t('st.error')],
    stats.centers.map((c) => (tr) => {
      tr.append(el('th', c.center, { scope: 'row' }), tdWith(timeOf(c.answered_at)), tdWith(timeOf(c.counted_since)));
      tr.append(tdWith(c.error ? nodeText(c.error) : el('span', '')));
      if (c.error) tr.classList.add('bad');
    }),
  );
}

/** The times to first pull, acceptance and completion per pair (median and 90th percentile). */
function timesTable(stats) {
  const kinds = ['first_pull', 'acceptance', 'completion'];
  const head = [...pairHead(false)];
  for (const k of kinds) head.push(t(`st.${k}_median`), t(`st.${k}_p90`));
  return statsTable(
    'stats-times',
    'st.times',
    head,
    stats.times.rows.map((row) => (tr) => {
      pairCells(tr, row, false);
      for (const k of kinds) {
        const m = row[k] || {};
        tr.append(durationCell(m.median_s, stats.min_count), durationCell(m.p90_s, stats.min_count));
      }
    }),
  );
}

/** The pushes refused for consent, by reason, per period. */
function refusalsTable(stats) {
  const periods = stats.periods.map((p) => p.label);
  return statsTable(
    'stats-refusals',
    'st.refusals',
    [t('st.reason'), ...periods, t('st.total')],
    stats.refusals.rows.map((row) => (tr) => {
      const th = el('th', null, { scope: 'row' });
      th.append(coded('problem.', row.reason));
      tr.append(th);
      for (const c of row.counts) tr.append(countCell(c, stats.min_count));
      tr.append(countCell(row.total, stats.min_count));
    }),
    (tr) => {
      totalsHeader(tr, 1);
      for (const c of stats.refusals.totals) tr.append(countCell(c, stats.min_count));
      tr.append(countCell(stats.refusals.total, stats.min_count));
    },
  );
}

/** Consent withdrawals per period: one row. */
function withdrawalsTable(stats) {
  const periods = stats.periods.map((p) => p.label);
  return statsTable('stats-withdrawals', 'st.withdrawals', [el('td'), ...periods, t('st.total')], [
    (tr) => {
      tr.append(el('th', t('st.withdrawn'), { scope: 'row' }));
      for (const c of stats.withdrawals.counts) tr.append(countCell(c, stats.min_count));
      tr.append(countCell(stats.withdrawals.total, stats.min_count));
    },
  ]);
}

/** Everything the answer holds, in `result`. */
function renderStats(result, stats) {
  const n = stats.min_count;
  const periods = stats.periods.map((p) => p.label);
  const messages = countsTable('stats-messages', 'st.messages', stats.messages, periods, true, n);
  const outcomes = countsTable('stats-outcomes', 'st.outcomes', stats.outcomes, stats.outcomes.columns.map((c) => columnName('outcome.', c)), false, n);
  const acceptance = countsTable('stats-acceptance', 'st.acceptance', stats.acceptance_distribution, stats.acceptance_distribution.columns.map((c) => columnName('band.', c)), false, n);
  const all = (table) => [...table.rows.flatMap((r) => [...r.counts, r.total]), ...(table.totals || []), table.total];
  const chartOr = (rows, draw, tableId) => {
    if (!rows.length) return el('p', t('empty'));
    const chart = draw(stats, tableId);
    return scrollBox(chart, chart.querySelector('title').textContent);
  };
  result.replaceChildren(
    summary(stats),
    section('st.centers', scrollBox(centersTable(stats), t('st.centers'))),
    section('st.messages', chartOr(stats.messages.rows, messagesChart, 'stats-messages'), scrollBox(messages, t('st.messages')), ...hiddenNote(all(stats.messages), n)),
    section('st.outcomes', chartOr(stats.outcomes.rows, outcomesChart, 'stats-outcomes'), scrollBox(outcomes, t('st.outcomes')), ...hiddenNote(all(stats.outcomes), n)),
    section('st.acceptance', chartOr(stats.acceptance_distribution.totals, acceptanceChart, 'stats-acceptance'), scrollBox(acceptance, t('st.acceptance')), ...hiddenNote(all(stats.acceptance_distribution), n)),
    section('st.times', scrollBox(timesTable(stats), t('st.times')), el('p', fmt('st.times_note', { n }), { class: 'note' })),
    section('st.refusals', scrollBox(refusalsTable(stats), t('st.refusals')), ...hiddenNote(all(stats.refusals), n)),
    section('st.withdrawals', scrollBox(withdrawalsTable(stats), t('st.withdrawals')), ...hiddenNote([...stats.withdrawals.counts, stats.withdrawals.total], n)),
  );
}

async function runStats() {
  const form = document.getElementById('stats-form');
  const result = document.getElementById('stats-result');
  const csv = document.getElementById('stats-csv');
  const q = queryOf(form);
  clearError();
  csv.hidden = true;
  lastStats = null;
  result.replaceChildren(label('p', 'loading'));
  result.setAttribute('aria-busy', 'true');
  try {
    lastStats = await getJson(`/v1/stats?${q}`);
    renderStats(result, lastStats);
    const csvQuery = new URLSearchParams(q);
    csvQuery.set('format', 'csv');
    csv.href = `/v1/stats?${csvQuery}`;
    csv.hidden = false;
  } catch (e) {
    result.replaceChildren();
    showFailure(e);
  } finally {
    result.setAttribute('aria-busy', 'false');
  }
}

document.addEventListener('DOMContentLoaded', () => {
  document.getElementById('stats-form').addEventListener('submit', (event) => {
    event.preventDefault();
    runStats();
  });
  // The tables and charts hold composed text: drawn again in the new language.
  document.addEventListener('console-language', () => {
    if (lastStats) renderStats(document.getElementById('stats-result'), lastStats);
  });
});
