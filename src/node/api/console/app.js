// The privacy officer's console: forms that call this node's /v1/privacy/… endpoints and
// render their answers. Every piece of data goes into the page as text (textContent),
// never as markup. The browser presents the officer's client certificate; nothing else
// authenticates here.
'use strict';

const LABELS = {
  ko: {
    title: 'plusgate 개인정보 보호책임자 콘솔',
    toggle: 'English',
    'nav.consents': '동의 검색',
    'nav.disclosures': '정보주체 제공 이력',
    'nav.refusals': '전송 거부',
    'nav.withdrawals': '동의 철회',
    'nav.audit': '감사 로그 상태',
    'f.subject': '정보주체',
    'f.agency': '기관',
    'f.status': '상태',
    'f.from': '시작일',
    'f.to': '종료일',
    's.any': '전체',
    's.granted': '동의',
    's.withdrawn': '철회',
    's.expired': '만료',
    search: '검색',
    csv: 'CSV 내려받기',
    loading: '불러오는 중…',
    empty: '해당하는 기록이 없습니다.',
    truncated: '결과가 너무 많아 일부만 표시합니다. 조건을 좁혀 주세요.',
    count: '건',
    'err.http': '요청이 거부되었습니다',
    'err.network': '노드에 연결할 수 없습니다',
    'c.id': '동의 ID',
    'c.subject': '정보주체',
    'c.collected_by': '수집 기관',
    'c.recipients': '제공받는 기관',
    'c.purposes': '목적',
    'c.items': '항목',
    'c.valid_from': '유효 시작',
    'c.valid_until': '유효 종료',
    'c.retention': '보유 기간',
    'c.registered_at': '등록 시각',
    'c.status': '상태',
    'c.withdrawn_at': '철회 시각',
    'd.accepted_at': '접수 시각',
    'd.message_id': '메시지 ID',
    'd.type': '유형',
    'd.from': '보낸 기관',
    'd.to': '받는 기관',
    'd.consent_id': '동의 ID',
    'd.items': '항목',
    'd.delivered': '전달된 노드',
    'd.first_pulled': '최초 수신',
    'd.acked_at': '수신 확인',
    'r.at': '시각',
    'r.actor': '처리자',
    'r.detail': '거부 사유',
    'w.withdrawn_at': '철회 시각',
    'w.by': '기록 기관',
    'w.reason': '사유',
    'a.full': '처음부터 전체 검증 (느림)',
    'a.check': '검증',
    'a.length': '항목 수',
    'a.head': '최신 해시',
    'a.verified': '검증 결과',
    'a.verified_from': '검증 시작점',
    'a.entries_checked': '이번에 검증한 항목',
    'a.problem': '문제',
    'a.checkpoint': '마지막 서명 체크포인트',
    'a.cp_seq': '체크포인트 위치 (seq)',
    'a.cp_head': '체크포인트 해시',
    'a.cp_signed_at': '서명 시각',
    'a.cp_signature': '서명 검증',
    'a.checked_at': '확인 시각',
    'a.none': '없음',
    'a.ok': '정상 (검증됨)',
    'a.broken': '손상됨',
    'a.genesis': '처음(제네시스)부터',
    'a.from_checkpoint': '체크포인트부터',
    'a.sig_ok': '유효',
    'a.sig_bad': '유효하지 않음',
    'a.sig_unknown': '확인할 키 없음',
    'a.peer': '보관 중인 센터 체크포인트',
    'a.peer_status': '센터 감사 로그',
    'a.consistent': '일관됨',
    'a.contradicted': '모순됨 (되돌림 또는 분기)',
    'a.evidence': '증거',
  },
  en: {
    title: 'plusgate privacy officer console',
    toggle: '한국어',
    'nav.consents': 'Consents',
    'nav.disclosures': 'Disclosure history',
    'nav.refusals': 'Refusals',
    'nav.withdrawals': 'Withdrawals',
    'nav.audit': 'Audit log status',
    'f.subject': 'Subject',
    'f.agency': 'Agency',
    'f.status': 'Status',
    'f.from': 'From',
    'f.to': 'To',
    's.any': 'Any',
    's.granted': 'Granted',
    's.withdrawn': 'Withdrawn',
    's.expired': 'Expired',
    search: 'Search',
    csv: 'Download CSV',
    loading: 'Loading…',
    empty: 'No matching records.',
    truncated: 'Too many results: only the first are shown. Narrow the filters.',
    count: 'rows',
    'err.http': 'The request was refused',
    'err.network': 'Cannot reach the node',
    'c.id': 'Consent id',
    'c.subject': 'Subject',
    'c.collected_by': 'Collected by',
    'c.recipients': 'Recipients',
    'c.purposes': 'Purposes',
    'c.items': 'Items',
    'c.valid_from': 'Valid from',
    'c.valid_until': 'Valid until',
    'c.retention': 'Retention',
    'c.registered_at': 'Registered at',
    'c.status': 'Status',
    'c.withdrawn_at': 'Withdrawn at',
    'd.accepted_at': 'Accepted at',
    'd.message_id': 'Message id',
    'd.type': 'Type',
    'd.from': 'From',
    'd.to': 'To',
    'd.consent_id': 'Consent id',
    'd.items': 'Items',
    'd.delivered': 'Handed to node',
    'd.first_pulled': 'First pulled',
    'd.acked_at': 'Acknowledged',
    'r.at': 'At',
    'r.actor': 'Actor',
    'r.detail': 'Reason',
    'w.withdrawn_at': 'Withdrawn at',
    'w.by': 'Recorded by',
    'w.reason': 'Reason',
    'a.full': 'Verify the whole chain from genesis (slow)',
    'a.check': 'Verify',
    'a.length': 'Entries',
    'a.head': 'Head hash',
    'a.verified': 'Result',
    'a.verified_from': 'Verified from',
    'a.entries_checked': 'Entries checked now',
    'a.problem': 'Problem',
    'a.checkpoint': 'Last signed checkpoint',
    'a.cp_seq': 'Checkpoint position (seq)',
    'a.cp_head': 'Checkpoint head',
    'a.cp_signed_at': 'Signed at',
    'a.cp_signature': 'Signature',
    'a.checked_at': 'Checked at',
    'a.none': 'none',
    'a.ok': 'OK (verified)',
    'a.broken': 'BROKEN',
    'a.genesis': 'genesis',
    'a.from_checkpoint': 'last checkpoint',
    'a.sig_ok': 'valid',
    'a.sig_bad': 'INVALID',
    'a.sig_unknown': 'no key to check',
    'a.peer': 'Checkpoint held of center',
    'a.peer_status': "Center's audit log",
    'a.consistent': 'consistent',
    'a.contradicted': 'CONTRADICTED (rolled back or forked)',
    'a.evidence': 'Evidence',
  },
};

let lang = 'ko';

function t(key) {
  return (LABELS[lang] && LABELS[lang][key]) || LABELS.en[key] || key;
}

/** Writes the labels of the current language into every [data-i18n] element. */
function applyLabels() {
  document.documentElement.lang = lang;
  document.title = t('title');
  for (const el of document.querySelectorAll('[data-i18n]')) {
    el.textContent = t(el.dataset.i18n);
  }
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

function showError(message) {
  const box = document.getElementById('error');
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  const box = document.getElementById('error');
  box.textContent = '';
  box.hidden = true;
}

/** GETs JSON from this node; throws an Error whose message says what went wrong. */
async function getJson(path) {
  let resp;
  try {
    resp = await fetch(path, { headers: { accept: 'application/json' }, cache: 'no-store' });
  } catch (e) {
    throw new Error(`${t('err.network')}: ${e.message}`);
  }
  const text = await resp.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch (e) {
    body = null;
  }
  if (!resp.ok) {
    const detail = body && body.detail ? body.detail : text.slice(0, 300);
    throw new Error(`${t('err.http')} (${resp.status}): ${detail}`);
  }
  return body;
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

/**
 * Renders rows as a table into `container`. `columns`: [labelKey, row => value].
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
  table.append(el('thead'));
  table.tHead.append(head);
  const body = el('tbody');
  for (const row of rows) {
    const tr = el('tr');
    for (const [, value] of columns) tr.append(el('td', text(value(row))));
    body.append(tr);
  }
  table.append(body);
  container.append(table);
}

const pair = (p) => (Array.isArray(p) ? `${p[0]} (${p[1]})` : '');

const REPORTS = {
  consents: {
    path: () => '/v1/privacy/consents',
    key: 'consents',
    columns: [
      ['c.id', (r) => r.id],
      ['c.subject', (r) => r.subject],
      ['c.status', (r) => r.status],
      ['c.collected_by', (r) => r.collected_by],
      ['c.recipients', (r) => r.recipients],
      ['c.purposes', (r) => r.purposes],
      ['c.items', (r) => r.items],
      ['c.valid_from', (r) => r.valid_from],
      ['c.valid_until', (r) => r.valid_until],
      ['c.retention', (r) => r.retention_period],
      ['c.registered_at', (r) => r.registered_at],
      ['c.withdrawn_at', (r) => r.withdrawn_at],
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
      ['d.accepted_at', (r) => r.accepted_at],
      ['d.message_id', (r) => r.message_id],
      ['d.type', (r) => r.type],
      ['d.from', (r) => r.from],
      ['d.to', (r) => r.to],
      ['d.consent_id', (r) => r.consent_id],
      ['d.items', (r) => r.items],
      ['d.delivered', (r) => pair(r.delivered_to_node)],
      ['d.first_pulled', (r) => pair(r.first_pulled)],
      ['d.acked_at', (r) => r.acked_at],
    ],
  },
  refusals: {
    path: () => '/v1/privacy/refusals',
    key: 'refusals',
    columns: [
      ['r.at', (r) => r.at],
      ['d.message_id', (r) => r.message_id],
      ['d.from', (r) => r.from],
      ['d.to', (r) => r.to],
      ['c.subject', (r) => r.subject],
      ['d.consent_id', (r) => r.consent_id],
      ['r.detail', (r) => r.detail],
      ['r.actor', (r) => r.actor],
    ],
  },
  withdrawals: {
    path: () => '/v1/privacy/withdrawals',
    key: 'withdrawals',
    columns: [
      ['w.withdrawn_at', (r) => r.withdrawn_at],
      ['c.id', (r) => r.consent_id],
      ['c.subject', (r) => r.subject],
      ['c.collected_by', (r) => r.collected_by],
      ['c.recipients', (r) => r.recipients],
      ['w.by', (r) => r.by],
      ['w.reason', (r) => r.reason],
    ],
  },
};

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
    showError(e.message);
  } finally {
    result.setAttribute('aria-busy', 'false');
  }
}

/** A row of the audit status list: a translated term and a value (text, or a label key). */
function auditRow(list, key, value, valueKey) {
  const dd = valueKey ? label('dd', valueKey) : el('dd', text(value));
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
    const s = await getJson(`/v1/privacy/audit${full ? '?verify=full' : ''}`);
    const list = el('dl', null, { id: 'audit-status' });
    auditRow(list, 'a.verified', null, s.verified ? 'a.ok' : 'a.broken').className = s.verified
      ? 'ok'
      : 'bad';
    auditRow(list, 'a.length', s.length);
    auditRow(list, 'a.head', s.head);
    auditRow(list, 'a.verified_from', null, s.verified_from === 'genesis' ? 'a.genesis' : 'a.from_checkpoint');
    auditRow(list, 'a.entries_checked', `${s.entries_checked} (${s.check_ms} ms)`);
    if (s.problem) auditRow(list, 'a.problem', s.problem).className = 'bad';
    const cp = s.checkpoint;
    if (cp) {
      auditRow(list, 'a.cp_seq', `${cp.seq} (${cp.length})`);
      auditRow(list, 'a.cp_head', cp.head);
      auditRow(list, 'a.cp_signed_at', cp.signed_at);
      const sig = cp.signature_valid === true ? 'a.sig_ok' : cp.signature_valid === false ? 'a.sig_bad' : 'a.sig_unknown';
      auditRow(list, 'a.cp_signature', null, sig).className = cp.signature_valid === false ? 'bad' : '';
    } else {
      auditRow(list, 'a.checkpoint', null, 'a.none');
    }
    // What this node holds of each center's checkpoints, and any two that contradict.
    for (const p of s.peers || []) {
      const held = p.checkpoint ? `${p.checkpoint.length} (${p.checkpoint.signed_at})` : '-';
      auditRow(list, 'a.peer', `${p.center}: ${held}`);
      auditRow(list, 'a.peer_status', null, p.consistent ? 'a.consistent' : 'a.contradicted')
        .className = p.consistent ? '' : 'bad';
      for (const e of p.evidence) {
        auditRow(list, 'a.evidence', `${e.found_at}: ${e.problem}`).className = 'bad';
      }
    }
    auditRow(list, 'a.checked_at', s.checked_at);
    result.replaceChildren(list);
  } catch (e) {
    result.replaceChildren();
    showError(e.message);
  } finally {
    result.setAttribute('aria-busy', 'false');
  }
}

function showView(name) {
  for (const section of document.querySelectorAll('section.view')) {
    section.hidden = section.id !== `view-${name}`;
  }
  for (const button of document.querySelectorAll('nav button')) {
    button.setAttribute('aria-pressed', String(button.dataset.view === name));
  }
  clearError();
}

document.addEventListener('DOMContentLoaded', () => {
  applyLabels();
  document.getElementById('lang-toggle').addEventListener('click', () => {
    lang = lang === 'ko' ? 'en' : 'ko';
    applyLabels();
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
  showView('consents');
  document.body.dataset.ready = 'true';
});
