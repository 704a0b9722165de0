// The privacy officer's console: forms that call this node's /v1/privacy/… endpoints and
// render their answers. Every piece of data goes into the page as text (textContent),
// never as markup. The browser presents the officer's client certificate; nothing else
// authenticates here.
'use strict';

// Labels come from labels.json (one catalogue, Korean and English, checked by a unit test
// to cover every status, problem type, role and message type the node can emit). The
// language is the officer's last choice (localStorage), else the browser's.
const LANGUAGES = ['ko', 'en'];
const LANGUAGE_KEY = 'plusgate.console.lang';
let LABELS = null;
let lang = initialLanguage();

/** The remembered language, else the first of the browser's that the console has, else Korean. */
function initialLanguage() {
  try {
    const saved = window.localStorage.getItem(LANGUAGE_KEY);
    if (LANGUAGES.includes(saved)) return saved;
  } catch (e) {
    // Storage blocked (a privacy setting): fall back to the browser's language.
  }
  for (const tag of navigator.languages || [navigator.language]) {
    const primary = String(tag || '').toLowerCase().split('-')[0];
    if (LANGUAGES.includes(primary)) return primary;
  }
  return 'ko';
}

function setLanguage(next) {
  lang = next;
  try {
    window.localStorage.setItem(LANGUAGE_KEY, next);
  } catch (e) {
    // Not remembered, but still switched.
  }
  applyLabels();
  // Views that composed text from labels (the statistics) draw it again.
  document.dispatchEvent(new Event('console-language'));
}

/** The label `key` in the current language. A missing one is a bug: logged, and the key shown. */
function t(key) {
  const text = LABELS && LABELS[lang] && LABELS[lang][key];
  if (typeof text === 'string') return text;
  console.error(`plusgate console: no ${lang} label for ${key}`);
  return key;
}

/** True if the catalogue has label `key` (for values from the node: shown as sent if not). */
function hasLabel(key) {
  return Boolean(LABELS && LABELS[lang] && typeof LABELS[lang][key] === 'string');
}

/** Writes the labels of the current language into every [data-i18n] element. */
function applyLabels() {
  if (!LABELS) return; // still loading: the page's built-in Korean stays until then
  document.documentElement.lang = lang;
  for (const e of document.querySelectorAll('[data-i18n]')) {
    e.textContent = t(e.dataset.i18n);
  }
  // The page's title is the heading's (which names a manager's console differently).
  document.title = t(document.getElementById('title').dataset.i18n);
  for (const e of document.querySelectorAll('[data-i18n-aria-label]')) {
    e.setAttribute('aria-label', t(e.dataset.i18nAriaLabel));
  }
  // The toggle names the other language, in that language.
  document.getElementById('lang-toggle').lang = t('toggle.lang');
}

/**
 * An RFC 3339 instant as Korea Standard Time with the offset shown, e.g.
 * 2026-11-26T23:30:00Z -> "2026-11-27 08:30:00 +09:00". Korea has no daylight saving time
 * (since 1988), so +09:00 is exact. Anything that is not a time is returned as it is.
 */
function seoulTime(value) {
  const ms = typeof value === 'string' ? Date.parse(value) : Number.NaN;
  if (Number.isNaN(ms)) return value === undefined || value === null ? '' : String(value);
  const d = new Date(ms + 9 * 3600 * 1000);
  const p = (n, width = 2) => String(n).padStart(width, '0');
  const day = `${p(d.getUTCFullYear(), 4)}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())}`;
  const time = `${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}`;
  return `${day} ${time} +09:00`;
}

/** An element with text content and optional attributes (all data goes in as text). */
function el(tag, text, attrs) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  return e;
}

/** A label element that follows the language toggle. */
function label(tag, key) {
  return el(tag, t(key), { 'data-i18n': key });
}

/**
 * A value the node sent from a fixed set (a status, a message type, a problem type, a role)
 * as its translated label, which follows the toggle; a value without one as it was sent.
 */
function coded(prefix, value) {
  const key = `${prefix}${value}`;
  if (value !== undefined && value !== null && hasLabel(key)) return label('span', key);
  return el('span', text(value));
}

/** An instant as Korea Standard Time; the instant itself stays in `datetime`. */
function timeOf(value) {
  if (value === undefined || value === null || value === '') return el('span', '');
  return el('time', seoulTime(value), { datetime: String(value) });
}

/** Text the node wrote in English (a problem's detail): marked so, for screen readers. */
function nodeText(value) {
  return el('span', value, { lang: 'en', class: 'node-text' });
}

/**
 * A party as an audit entry names it, `urn:plusgate:<role>:<center>[:<name>]`, as its
 * translated role and its id (`suwon/welfare`, or the center of a node).
 */
function party(uri) {
  const parts = typeof uri === 'string' ? uri.split(':') : [];
  if (parts.length < 4 || parts[0] !== 'urn' || parts[1] !== 'plusgate') return el('span', text(uri));
  const span = el('span', null, { title: uri });
  span.append(coded('role.', parts[2]), document.createTextNode(` ${parts.slice(3).join('/')}`));
  return span;
}

/** A refusal's `<problem-type>: <explanation>` as the translated reason and the node's words. */
function refusal(detail) {
  const s = text(detail);
  const cut = s.indexOf(': ');
  const kind = cut > 0 ? s.slice(0, cut) : s;
  const span = el('span', null, { class: 'refusal' });
  span.append(coded('problem.', kind));
  if (cut > 0) span.append(el('br'), nodeText(s.slice(cut + 2)));
  return span;
}

/** A (party, time) pair: who took or pulled a message, and when. */
function partyAt(p) {
  if (!Array.isArray(p)) return el('span', '');
  const span = el('span');
  span.append(party(p[0]), document.createTextNode(', '), timeOf(p[1]));
  return span;
}

function showError(parts) {
  const box = document.getElementById('error');
  box.replaceChildren(...parts);
  box.hidden = false;
}

function clearError() {
  const box = document.getElementById('error');
  box.replaceChildren();
  box.hidden = true;
}

/** An error the console shows: what failed, as labels and the node's own words. */
class ConsoleError extends Error {
  constructor(parts) {
    super(parts.map((p) => p.textContent).join(''));
    this.parts = parts;
  }
}

/** GETs JSON from this node; throws a ConsoleError saying what went wrong. */
async function getJson(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' });
  } catch (e) {
    throw new ConsoleError([label('span', 'err.network'), document.createTextNode(': '), nodeText(e.message)]);
  }
  const body = await resp.text();
  let json = null;
  try {
    json = JSON.parse(body);
  } catch (e) {
    json = null;
  }
  if (!resp.ok) {
    const parts = [label('span', 'err.http'), document.createTextNode(` (${resp.status}): `)];
    const kind = json && typeof json.type === 'string' ? json.type.replace(/^urn:plusgate:problem:/, '') : '';
    if (kind) parts.push(coded('problem.', kind), document.createTextNode(' — '));
    parts.push(nodeText(json && json.detail ? json.detail : body.slice(0, 300)));
    throw new ConsoleError(parts);
  }
  return json;
}

/** The non-empty fields of a form as a query string. */
function queryOf(form) {
  const q = new URLSearchParams();
  for (const [k, v] of new FormData(form).entries()) {
    if (typeof v === 'string' && v.trim() !== '') q.append(k, v.trim());
  }
  return q;
}

function text(v) {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) return v.join(', ');
  return String(v);
}

/** A cell's content: a node as it is, anything else as text. */
function cell(value) {
  const td = el('td');
  if (value instanceof Node) td.append(value);
  else td.textContent = text(value);
  return td;
}

/**
 * Renders rows as a table into `container`. `columns`: [labelKey, row => value], where a
 * value is text or an element (a translated label, a time).
 */
function renderTable(container, columns, rows, truncated) {
  container.replaceChildren();
  if (truncated) container.append(label('p', 'truncated'));
  if (!rows.length) {
    container.append(label('p', 'empty'));
    return;
  }
  const count = el('p', null, { class: 'count' });
  count.append(el('span', rows.length), document.createTextNode(' '), label('span', 'count'));
  container.append(count);
  const table = el('table');
  const head = el('tr');
  for (const [key] of columns) head.append(label('th', key));
  for (const th of head.children) th.setAttribute('scope', 'col');
  table.append(el('thead'));
  table.tHead.append(head);
  const body = el('tbody');
  for (const row of rows) {
    const tr = el('tr');
    for (const [, value] of columns) tr.append(cell(value(row)));
    body.append(tr);
  }
  table.append(body);
  container.append(table);
}

const REPORTS = {
  consents: {
    path: () => '/v1/privacy/consents',
    key: 'consents',
    columns: [
      ['c.id', (r) => r.id],
      ['c.subject', (r) => r.subject],
      ['c.status', (r) => coded('status.', r.status)],
      ['c.collected_by', (r) => r.collected_by],
      ['c.recipients', (r) => r.recipients],
      ['c.purposes', (r) => r.purposes],
      ['c.items', (r) => r.items],
      ['c.valid_from', (r) => timeOf(r.valid_from)],
      ['c.valid_until', (r) => timeOf(r.valid_until)],
      ['c.retention', (r) => r.retention_period],
      ['c.registered_at', (r) => timeOf(r.registered_at)],
      ['c.withdrawn_at', (r) => timeOf(r.withdrawn_at)],
    ],
  },
  disclosures: {
    path: (q) => {
      const subject = q.get('subject') || '';
      q.delete('subject');
      return `/v1/privacy/subjects/${encodeURIComponent(subject)}/disclosures`;
    },
    key: 'disclosures',
    columns: [
      ['d.accepted_at', (r) => timeOf(r.accepted_at)],
      ['d.message_id', (r) => r.message_id],
      ['d.type', (r) => coded('type.', r.type)],
      ['d.from', (r) => r.from],
      ['d.to', (r) => r.to],
      ['d.consent_id', (r) => r.consent_id],
      ['d.items', (r) => r.items],
      ['d.delivered', (r) => partyAt(r.delivered_to_node)],
      ['d.first_pulled', (r) => partyAt(r.first_pulled)],
      ['d.acked_at', (r) => timeOf(r.acked_at)],
    ],
  },
  refusals: {
    path: () => '/v1/privacy/refusals',
    key: 'refusals',
    columns: [
      ['r.at', (r) => timeOf(r.at)],
      ['d.message_id', (r) => r.message_id],
      ['d.from', (r) => r.from],
      ['d.to', (r) => r.to],
      ['c.subject', (r) => r.subject],
      ['d.consent_id', (r) => r.consent_id],
      ['r.reason', (r) => refusal(r.detail)],
      ['r.actor', (r) => party(r.actor)],
    ],
  },
  withdrawals: {
    path: () => '/v1/privacy/withdrawals',
    key: 'withdrawals',
    columns: [
      ['w.withdrawn_at', (r) => timeOf(r.withdrawn_at)],
      ['c.id', (r) => r.consent_id],
      ['c.subject', (r) => r.subject],
      ['c.collected_by', (r) => r.collected_by],
      ['c.recipients', (r) => r.recipients],
      ['w.by', (r) => r.by],
      ['w.reason', (r) => r.reason],
    ],
  },
};

/** Shows what failed: a ConsoleError's parts, or any other error's message. */
function showFailure(e) {
  showError(e instanceof ConsoleError ? e.parts : [nodeText(e.message)]);
}

async function runReport(name) {
  const report = REPORTS[name];
  const form = document.getElementById(`${name}-form`);
  const result = document.getElementById(`${name}-result`);
  const csv = document.getElementById(`${name}-csv`);
  const q = queryOf(form);
  const path = report.path(q);
  clearError();
  csv.hidden = true;
  result.replaceChildren(label('p', 'loading'));
  result.setAttribute('aria-busy', 'true');
  try {
    const body = await getJson(q.toString() ? `${path}?${q}` : path);
    renderTable(result, report.columns, body[report.key] || [], body.truncated === true);
    const csvQuery = new URLSearchParams(q);
    csvQuery.set('format', 'csv');
    csv.href = `${path}?${csvQuery}`;
    csv.hidden = false;
  } catch (e) {
    result.replaceChildren();
    showFailure(e);
  } finally {
    result.setAttribute('aria-busy', 'false');
  }
}

/** A row of the audit status list: a translated term and its value (text or an element). */
function auditRow(list, key, value) {
  const dd = el('dd');
  if (value instanceof Node) dd.append(value);
  else dd.textContent = text(value);
  list.append(label('dt', key), dd);
  return dd;
}

async function runAudit() {
  const result = document.getElementById('audit-result');
  const full = document.getElementById('audit-full').checked;
  clearError();
  result.replaceChildren(label('p', 'loading'));
  result.setAttribute('aria-busy', 'true');
  try {
    renderAudit(result, await getJson(`/v1/privacy/audit${full ? '?verify=full' : ''}`));
  } catch (e) {
    result.replaceChildren();
    showFailure(e);
  } finally {
    result.setAttribute('aria-busy', 'false');
  }
}

/** The audit chain's status `s` (GET /v1/privacy/audit) as a list in `result`. */
function renderAudit(result, s) {
  const list = el('dl', null, { id: 'audit-status' });
  auditRow(list, 'a.verified', label('span', s.verified ? 'a.ok' : 'a.broken')).className = s.verified
    ? 'ok'
    : 'bad';
  auditRow(list, 'a.length', s.length);
  auditRow(list, 'a.head', s.head);
  auditRow(list, 'a.verified_from', coded('verified_from.', s.verified_from));
  auditRow(list, 'a.entries_checked', `${s.entries_checked} (${s.check_ms} ms)`);
  if (s.problem) auditRow(list, 'a.problem', nodeText(s.problem)).className = 'bad';
  const cp = s.checkpoint;
  if (cp) {
    auditRow(list, 'a.cp_seq', `${cp.seq} (${cp.length})`);
    auditRow(list, 'a.cp_head', cp.head);
    auditRow(list, 'a.cp_signed_at', timeOf(cp.signed_at));
    const sig = cp.signature_valid === true ? 'a.sig_ok' : cp.signature_valid === false ? 'a.sig_bad' : 'a.sig_unknown';
    auditRow(list, 'a.cp_signature', label('span', sig)).className = cp.signature_valid === false ? 'bad' : '';
  } else {
    auditRow(list, 'a.checkpoint', label('span', 'a.none'));
  }
  // What this node holds of each center's checkpoints, and any two that contradict.
  for (const p of s.peers || []) {
    const held = el('span', `${p.center}: `);
    if (p.checkpoint) {
      held.append(document.createTextNode(`${p.checkpoint.length} (`), timeOf(p.checkpoint.signed_at), document.createTextNode(')'));
    } else {
      held.append(document.createTextNode('-'));
    }
    auditRow(list, 'a.peer', held);
    auditRow(list, 'a.peer_status', label('span', p.consistent ? 'a.consistent' : 'a.contradicted'))
      .className = p.consistent ? '' : 'bad';
    for (const e of p.evidence) {
      const found = el('span');
      found.append(timeOf(e.found_at), document.createTextNode(': '), nodeText(e.problem));
      auditRow(list, 'a.evidence', found).className = 'bad';
    }
  }
  auditRow(list, 'a.checked_at', timeOf(s.checked_at));
  result.replaceChildren(list);
}

/**
 * Who the browser's certificate is, as far as the views go: `manager` or `officer`. The
 * page cannot read its own client certificate; the node names the role it admitted in the
 * `Plusgate-Role` header of every console file, read here from the label catalogue's
 * answer (so finding the role queries nothing and writes no audit entry).
 */
let ROLE = 'officer';

/**
 * Shows the views `role` may use: a manager only the statistics, an officer all of them.
 * Until then the page shows no view and no tabs, so a manager never sees the officer's.
 */
function applyRole(role) {
  document.body.dataset.role = role;
  if (role === 'manager') {
    document.getElementById('title').dataset.i18n = 'title.manager';
    applyLabels();
  }
  for (const button of document.querySelectorAll('nav button')) {
    button.hidden = role === 'manager' && button.dataset.view !== 'stats';
  }
  showView(role === 'manager' ? 'stats' : 'consents');
  document.querySelector('nav').hidden = false;
}

function showView(name) {
  for (const section of document.querySelectorAll('main > .view')) {
    section.hidden = section.id !== `view-${name}`;
  }
  for (const button of document.querySelectorAll('nav button')) {
    button.setAttribute('aria-pressed', String(button.dataset.view === name));
  }
  clearError();
}

/** Loads the label catalogue; the page keeps its built-in Korean labels if that fails. */
async function loadLabels() {
  const resp = await fetch('labels.json', { cache: 'no-store' });
  if (!resp.ok) throw new Error(`labels.json: ${resp.status}`);
  if (resp.headers.get('plusgate-role') === 'manager') ROLE = 'manager';
  LABELS = await resp.json();
}

document.addEventListener('DOMContentLoaded', async () => {
  document.getElementById('lang-toggle').addEventListener('click', () => {
    setLanguage(lang === 'ko' ? 'en' : 'ko');
  });
  for (const button of document.querySelectorAll('nav button')) {
    button.addEventListener('click', () => showView(button.dataset.view));
  }
  for (const name of Object.keys(REPORTS)) {
    document.getElementById(`${name}-form`).addEventListener('submit', (event) => {
      event.preventDefault();
      runReport(name);
    });
  }
  document.getElementById('audit-form').addEventListener('submit', (event) => {
    event.preventDefault();
    runAudit();
  });
  try {
    await loadLabels();
    applyLabels();
  } catch (e) {
    showError([el('span', '화면 문구를 불러오지 못했습니다 / Could not load the labels: '), nodeText(e.message)]);
  }
  applyRole(ROLE);
  document.body.dataset.ready = 'true';
});
