// Browser test of the privacy officer's console: Debian's headless Chromium driven by
// playwright-core, presenting the officer's client certificate to a real node that
// tests/node/console.rs started and filled (its clock at 23:30 UTC, so every record is on
// the next Seoul day), and axe-core checking every view in both languages. The statistics
// view's tables and charts are checked against the JSON the same browser fetches; a center
// manager gets that view only. Exits 0 if every check holds, 1 naming the first that failed.
//
// Environment (set by tests/node/console.rs):
//   PLUSGATE_URL               https://127.0.0.1:PORT of the node
//   OFFICER_CERT, OFFICER_KEY  the officer's certificate and key (PEM files)
//   AGENCY_CERT, AGENCY_KEY    an agency's, which must not get the console
//   SUBJECT                    a subject with consents and messages
//   CONSENT_ID                 a granted consent of SUBJECT
//   WITHDRAWN_ID               a withdrawn consent; its reason is markup that must stay text
//   MESSAGE_IDS                comma-separated ids of messages about SUBJECT
//   REFUSED_ID                 a message refused because it cited WITHDRAWN_ID
//   MANAGER_CERT, MANAGER_KEY  a center manager's, who gets the statistics view only
//   SCREENSHOT_DIR             optional: where to leave screenshots of the views
//   CHROMIUM                   optional: the browser (default /usr/bin/chromium)

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { chromium } from 'playwright-core';
import { AxeBuilder } from '@axe-core/playwright';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`environment variable ${name} is not set`);
  return v;
};

const url = env('PLUSGATE_URL');
const origin = new URL(url).origin;
const subject = env('SUBJECT');
const consentId = env('CONSENT_ID');
const withdrawnId = env('WITHDRAWN_ID');
const messageIds = env('MESSAGE_IDS').split(',');
const refusedId = env('REFUSED_ID');
const UTF8_BOM = [0xef, 0xbb, 0xbf];
const VIEWS = ['consents', 'disclosures', 'refusals', 'withdrawals', 'audit', 'stats'];
const CSV_HEADER = 'table,from,to,type,direction,reason,column,value';
const shots = process.env.SCREENSHOT_DIR;

const LAUNCH = {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
};

/** A browser context presenting the given client certificate to the node. */
function contextAs(browser, cert, key, locale = 'ko-KR') {
  return browser.newContext({
    // The development CA is self-signed; the node's identity is not what is tested here.
    ignoreHTTPSErrors: true,
    clientCertificates: [{ origin, certPath: cert, keyPath: key }],
    locale,
  });
}

/** Loads the console and waits until its labels are applied. */
async function open(page) {
  const resp = await page.goto(`${origin}/console/`);
  await page.waitForSelector('body[data-ready=true]');
  return resp;
}

/** The Seoul day after the UTC day of RFC 3339 instant `utc`, as YYYY-MM-DD. */
function nextDay(utc) {
  const d = new Date(`${utc.slice(0, 10)}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

/** Zero accessibility violations (axe-core, WCAG 2.x A/AA and best practices) on the page. */
async function accessible(page, what) {
  const results = await new AxeBuilder({ page }).analyze();
  const found = results.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target.join(' ')).join('; ')}`,
  );
  assert.deepEqual(found, [], `${what}: axe found ${found.length} violation(s)`);
}

/** A downloaded CSV: it starts with the UTF-8 BOM; returns the text after it. */
async function downloadCsv(page, linkId) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(`#${linkId}`)]);
  const bytes = fs.readFileSync(await download.path());
  assert.deepEqual([...bytes.subarray(0, 3)], UTF8_BOM, 'the CSV starts with the UTF-8 BOM');
  return new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes.subarray(3));
}

let step = 'start';
const check = async (name, fn) => {
  step = name;
  await fn();
  console.log(`ok - ${name}`);
};

async function shot(page, name) {
  if (shots) await page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
}

/** The texts of the cells of the table in `resultId`, row by row. */
async function rows(page, resultId) {
  return page.locator(`#${resultId} table tbody tr`).evaluateAll((trs) =>
    trs.map((tr) => Array.from(tr.cells, (td) => td.textContent)),
  );
}

async function submit(page, view) {
  const result = page.locator(`#${view}-result`);
  await page.click(`#${view}-form button[type=submit]`);
  await page.waitForFunction(
    (id) => {
      const el = document.getElementById(id);
      return el.getAttribute('aria-busy') === 'false';
    },
    `${view}-result`,
  );
  return result;
}

/** A count as the statistics tables carry it in data-value: the number, `x` if suppressed. */
const shown = (v) => (v === null ? 'x' : String(v));

/** The data-value of the cells of table `id`: its body rows, and its footer row if any. */
async function tableValues(page, id) {
  return page.evaluate((tableId) => {
    const table = document.getElementById(tableId);
    const values = (tr) => Array.from(tr.querySelectorAll('td[data-value]'), (td) => td.dataset.value);
    return {
      body: Array.from(table.tBodies[0].rows, values),
      foot: table.tFoot ? values(table.tFoot.rows[0]) : null,
      rowHeads: Array.from(table.tBodies[0].rows, (tr) => tr.querySelector('th[scope=row]').textContent),
      caption: table.caption.textContent,
    };
  }, id);
}

/** The statistics the page shows, as the node answers the same query to the same browser. */
async function statsJson(page) {
  const href = await page.getAttribute('#stats-csv', 'href');
  const query = new URL(href, origin).searchParams;
  assert.equal(query.get('format'), 'csv', href);
  query.delete('format');
  return page.evaluate(async (q) => {
    const resp = await fetch(`/v1/stats?${q}`, { headers: { accept: 'application/json' } });
    return resp.json();
  }, query.toString());
}

/** Every table of the statistics view holds the numbers of `stats`, hidden ones as `x`. */
async function tablesMatch(page, stats) {
  for (const [id, table] of [
    ['stats-messages', stats.messages],
    ['stats-outcomes', stats.outcomes],
    ['stats-acceptance', stats.acceptance_distribution],
    ['stats-refusals', stats.refusals],
  ]) {
    const got = await tableValues(page, id);
    assert.deepEqual(got.body, table.rows.map((r) => [...r.counts, r.total].map(shown)), id);
    // The outcomes have no column totals: no totals row either.
    const foot = table.totals ? [...table.totals, table.total].map(shown) : null;
    assert.deepEqual(got.foot, foot, `${id} totals`);
    const heads = table.rows.map((r) => r.from || r.reason);
    if (id !== 'stats-refusals') assert.deepEqual(got.rowHeads, heads, `${id} row headers`);
  }
  const withdrawals = await tableValues(page, 'stats-withdrawals');
  assert.deepEqual(withdrawals.body, [[...stats.withdrawals.counts, stats.withdrawals.total].map(shown)]);
  const times = await tableValues(page, 'stats-times');
  const measured = (m) => [m.median_s, m.p90_s].map(shown);
  assert.deepEqual(
    times.body,
    stats.times.rows.map((r) => [...measured(r.first_pull), ...measured(r.acceptance), ...measured(r.completion)]),
    'times',
  );
  const centers = await tableValues(page, 'stats-centers');
  assert.deepEqual(centers.rowHeads, stats.centers.map((c) => c.center), 'centers');
}

/** Each chart: an accessible SVG image with one bar per shown value, hatched for hidden ones. */
async function chartsMatch(page, stats) {
  for (const [id, tableId, values] of [
    ['stats-chart-messages', 'stats-messages', stats.messages.rows.flatMap((r) => r.counts)],
    ['stats-chart-outcomes', 'stats-outcomes', stats.outcomes.rows.flatMap((r) => r.counts)],
    ['stats-chart-acceptance', 'stats-acceptance', stats.acceptance_distribution.totals],
  ]) {
    const chart = await page.evaluate((chartId) => {
      const svg = document.getElementById(chartId);
      if (!svg) return null;
      return {
        tag: svg.namespaceURI,
        role: svg.getAttribute('role'),
        labelledby: svg.getAttribute('aria-labelledby'),
        describedby: svg.getAttribute('aria-describedby'),
        title: svg.querySelector(':scope > title')?.textContent,
        titleId: svg.querySelector(':scope > title')?.id,
        desc: svg.querySelector(':scope > desc')?.textContent,
        descId: svg.querySelector(':scope > desc')?.id,
        bars: svg.querySelectorAll('rect.bar:not(.suppressed)').length,
        hatched: Array.from(svg.querySelectorAll('rect.bar.suppressed'), (r) => r.getAttribute('fill')),
        styled: svg.querySelectorAll('[style]').length,
      };
    }, id);
    assert.ok(chart, `${id} is drawn`);
    assert.equal(chart.tag, 'http://www.w3.org/2000/svg', id);
    assert.equal(chart.role, 'img', id);
    assert.ok(chart.title && chart.desc, `${id} has a title and a description`);
    assert.equal(chart.labelledby, chart.titleId, id);
    assert.deepEqual(chart.describedby.split(' '), [chart.descId, tableId], id);
    const hidden = values.filter((v) => v === null).length;
    assert.equal(chart.bars, values.length - hidden, `${id}: one bar per shown value`);
    assert.equal(chart.hatched.length, hidden, `${id}: one hatched bar per hidden value`);
    assert.ok(chart.hatched.every((f) => f === `url(#${id}-hatch)`), `${id}: hidden bars are hatched`);
    assert.ok(chart.desc.includes(String(hidden)), `${id}: the description counts the hidden values: ${chart.desc}`);
    assert.equal(chart.styled, 0, `${id}: no inline style`);
  }
}

async function main() {
  const browser = await chromium.launch(LAUNCH);
  try {
    const officer = await contextAs(browser, env('OFFICER_CERT'), env('OFFICER_KEY'));
    const page = await officer.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
    });
    // Any dialog means script ran that should not have (the markup in the reason).
    page.on('dialog', (d) => {
      problems.push(`dialog opened: ${d.message()}`);
      d.dismiss();
    });

    await check('the console loads for the officer, in Korean, under a strict policy', async () => {
      const resp = await page.goto(`${origin}/console`);
      assert.equal(resp.status(), 200, 'after the redirect from /console');
      assert.equal(new URL(page.url()).pathname, '/console/');
      const headers = resp.headers();
      assert.match(headers['content-security-policy'], /^default-src 'self'/);
      assert.equal(headers['cache-control'], 'no-store');
      assert.equal(headers['x-content-type-options'], 'nosniff');
      await page.waitForSelector('body[data-ready=true]');
      assert.equal(await page.getAttribute('html', 'lang'), 'ko');
      assert.equal(await page.textContent('#title'), 'plusgate 개인정보 보호책임자 콘솔');
      // The time zone is stated on the page.
      assert.match(await page.textContent('#tz-note'), /한국 표준시\(KST, UTC\+09:00\)/);
      assert.equal(await page.textContent('#consents-form label:has(#consents-from) span'), '시작일 (KST)');
    });

    await check('the language toggle switches every label and the lang attribute', async () => {
      await page.click('#lang-toggle');
      assert.equal(await page.getAttribute('html', 'lang'), 'en');
      assert.equal(await page.textContent('#title'), 'plusgate privacy officer console');
      assert.equal(await page.textContent('nav button[data-view=withdrawals]'), 'Withdrawals');
      assert.match(await page.textContent('#tz-note'), /Korea Standard Time \(KST, UTC\+09:00\)/);
      assert.equal(await page.getAttribute('nav', 'aria-label'), 'Reports');
      assert.equal(await page.getAttribute('#lang-toggle', 'lang'), 'ko');
      await page.click('#lang-toggle');
      assert.equal(await page.getAttribute('html', 'lang'), 'ko');
      assert.equal(await page.textContent('nav button[data-view=withdrawals]'), '동의 철회');
      assert.equal(await page.getAttribute('nav', 'aria-label'), '보고서');
    });

    await check('the language chosen is remembered across reloads', async () => {
      await page.click('#lang-toggle');
      await open(page);
      assert.equal(await page.getAttribute('html', 'lang'), 'en');
      assert.equal(await page.textContent('#title'), 'plusgate privacy officer console');
      assert.equal(await page.evaluate(() => localStorage.getItem('plusgate.console.lang')), 'en');
      await page.click('#lang-toggle');
      await open(page);
      assert.equal(await page.getAttribute('html', 'lang'), 'ko');
    });

    await check("without a choice, the browser's language decides", async () => {
      const english = await contextAs(browser, env('OFFICER_CERT'), env('OFFICER_KEY'), 'en-US');
      const other = await english.newPage();
      await open(other);
      assert.equal(await other.getAttribute('html', 'lang'), 'en');
      assert.equal(await other.textContent('nav button[data-view=consents]'), 'Consents');
      await english.close();
    });

    await check('times are shown in Seoul time with the offset: 23:30 UTC is 08:30 the next day', async () => {
      const shown = await page.evaluate(() => [
        seoulTime('2026-11-26T23:30:00Z'),
        seoulTime('2026-11-26T14:59:59.999Z'),
        seoulTime('2026-11-27T08:30:00+09:00'),
        seoulTime('2026-12-31T15:00:00.000Z'),
      ]);
      assert.deepEqual(shown, [
        '2026-11-27 08:30:00 +09:00',
        '2026-11-26 23:59:59 +09:00',
        '2026-11-27 08:30:00 +09:00',
        '2027-01-01 00:00:00 +09:00',
      ]);
    });

    let seoulDay = '';
    await check('the consent search finds the registered consent, with a CSV link', async () => {
      await page.fill('#consents-subject', subject);
      await page.selectOption('#consents-status', 'granted');
      await submit(page, 'consents');
      const found = await rows(page, 'consents-result');
      assert.deepEqual(
        found.map((r) => r[0]),
        [consentId],
        JSON.stringify(found),
      );
      assert.equal(found[0][2], '동의', 'the status, translated');
      const header = await page.locator('#consents-result th').first().textContent();
      assert.equal(header, '동의 ID');
      // Registered at 23:3x UTC on day D (the node's clock): shown as 08:3x on D+1 in Seoul.
      const registered = page.locator('#consents-result tbody tr td:nth-child(11) time');
      const utc = await registered.getAttribute('datetime');
      assert.match(utc, /T23:\d\d:\d\d(\.\d+)?Z$/, `the node's clock is late on a UTC day: ${utc}`);
      seoulDay = nextDay(utc);
      const shown = await registered.textContent();
      assert.ok(shown.startsWith(`${seoulDay} 08:`) && shown.endsWith(' +09:00'), shown);
      const href = await page.getAttribute('#consents-csv', 'href');
      assert.ok(href.includes('format=csv') && href.includes(`subject=${subject}`), href);
      assert.equal(await page.isVisible('#consents-csv'), true);
      // The link is a real download of the same report as CSV.
      const csv = await downloadCsv(page, 'consents-csv');
      assert.ok(csv.startsWith('id,subject,collected_by'), csv);
      assert.ok(csv.includes(`\r\n${consentId},${subject},`), csv);
      await shot(page, 'consents');
    });

    await check('a date filter is a Seoul day: the consent is on D+1, not on its UTC day D', async () => {
      const utcDay = new Date(Date.parse(`${seoulDay}T00:00:00Z`) - 86400000).toISOString().slice(0, 10);
      for (const [day, expected] of [[seoulDay, [consentId]], [utcDay, []]]) {
        await page.fill('#consents-from', day);
        await page.fill('#consents-to', day);
        await submit(page, 'consents');
        const found = await rows(page, 'consents-result');
        assert.deepEqual(found.map((r) => r[0]), expected, `from=to=${day}`);
      }
      await page.fill('#consents-from', '');
      await page.fill('#consents-to', '');
    });

    await check('a refused query shows the node\'s reason, its type translated', async () => {
      await page.fill('#consents-subject', '');
      await page.selectOption('#consents-status', '');
      await page.fill('#consents-agency', 'not an agency');
      await submit(page, 'consents');
      assert.equal(await page.isVisible('#error'), true);
      const error = await page.textContent('#error');
      assert.ok(error.includes('(400)') && error.includes('`agency`'), error);
      assert.ok(error.startsWith('요청이 거부되었습니다 (400): 잘못된 요청'), error);
      await accessible(page, 'consents with an error (ko)');
      await page.click('#lang-toggle');
      assert.ok((await page.textContent('#error')).startsWith('The request was refused (400): Malformed request'));
      await page.click('#lang-toggle');
      await page.fill('#consents-agency', '');
      // The browser logs the refused request; that one is expected.
      assert.equal(problems.length, 1, JSON.stringify(problems));
      assert.match(problems[0], /status of 400/);
      problems.length = 0;
    });

    await check('the withdrawal shows in withdrawals, its reason as plain text; its CSV keeps the Hangul', async () => {
      await page.click('nav button[data-view=withdrawals]');
      assert.equal(await page.isVisible('#view-withdrawals'), true);
      assert.equal(await page.isVisible('#error'), false);
      await submit(page, 'withdrawals');
      const found = await rows(page, 'withdrawals-result');
      const row = found.find((r) => r[1] === withdrawnId);
      assert.ok(row, JSON.stringify(found));
      assert.ok(row[6].includes('<img'), `the reason is shown as written: ${row[6]}`);
      assert.equal(await page.locator('#withdrawals-result img').count(), 0, 'no markup from data');
      assert.match(row[0], new RegExp(`^${seoulDay} 08:\\d\\d:\\d\\d \\+09:00$`), row[0]);
      const csv = await downloadCsv(page, 'withdrawals-csv');
      assert.ok(csv.startsWith('consent_id,'), csv);
      assert.ok(csv.includes('전화로 철회'), csv);
      await shot(page, 'withdrawals');
    });

    await check('the refusals view lists the refused message, its reason translated', async () => {
      await page.click('nav button[data-view=refusals]');
      await page.fill('#refusals-from', seoulDay);
      await page.fill('#refusals-to', seoulDay);
      await submit(page, 'refusals');
      const found = await rows(page, 'refusals-result');
      assert.deepEqual(found.map((r) => r[1]), [refusedId], JSON.stringify(found));
      const [row] = found;
      assert.ok(row[6].startsWith('철회된 동의'), `the reason, translated: ${row[6]}`);
      assert.ok(row[6].includes(withdrawnId), `the node's explanation stays: ${row[6]}`);
      assert.equal(row[7], '기관 suwon/employment', 'the actor, its role translated');
      const href = await page.getAttribute('#refusals-csv', 'href');
      assert.ok(href.includes(`from=${seoulDay}`) && href.includes(`to=${seoulDay}`), href);
      await page.click('#lang-toggle');
      const english = await rows(page, 'refusals-result');
      assert.ok(english[0][6].startsWith('Consent withdrawn'), english[0][6]);
      assert.equal(english[0][7], 'Agency suwon/employment');
      await page.click('#lang-toggle');
      await shot(page, 'refusals');
    });

    await check("the subject's disclosure timeline lists the pushed messages", async () => {
      await page.click('nav button[data-view=disclosures]');
      await page.fill('#disclosures-subject', subject);
      await submit(page, 'disclosures');
      const found = await rows(page, 'disclosures-result');
      assert.deepEqual(
        found.map((r) => r[1]),
        messageIds,
        JSON.stringify(found),
      );
      assert.ok(found.every((r) => r[2] === '의뢰'), 'the message type, translated');
      assert.ok(found.every((r) => r[8].startsWith(`기관 suwon/welfare, ${seoulDay} `)), 'first pulled by, when');
      await shot(page, 'disclosures');
    });

    await check('the audit view shows a verified chain and its last signed checkpoint', async () => {
      await page.click('nav button[data-view=audit]');
      await submit(page, 'audit');
      const terms = await page.locator('#audit-status dt').allTextContents();
      const values = await page.locator('#audit-status dd').allTextContents();
      const status = Object.fromEntries(terms.map((t, i) => [t, values[i]]));
      assert.equal(status['검증 결과'], '정상 (검증됨)', JSON.stringify(status));
      assert.equal(status['서명 검증'], '유효', JSON.stringify(status));
      assert.equal(status['검증 시작점'], '마지막 체크포인트부터', JSON.stringify(status));
      assert.match(status['체크포인트 위치 (seq)'], /^\d+ \(\d+\)$/);
      assert.match(status['체크포인트 해시'], /^[0-9a-f]{64}$/);
      assert.match(status['최신 해시'], /^[0-9a-f]{64}$/);
      assert.match(status['서명 시각'], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+09:00$/);
      await page.click('#lang-toggle');
      assert.equal(await page.textContent('#audit-status dd.ok'), 'OK (verified)');
      await shot(page, 'audit');
      await page.click('#lang-toggle');
    });

    await check('the statistics view shows the numbers the node answers, some of them hidden', async () => {
      await page.click('nav button[data-view=stats]');
      assert.equal(await page.isVisible('#view-stats'), true);
      assert.equal(await page.textContent('nav button[data-view=stats]'), '통계');
      await submit(page, 'stats');
      assert.equal(await page.isVisible('#error'), false, await page.textContent('#error'));
      const stats = await statsJson(page);
      assert.equal(stats.scope, 'center');
      assert.equal(stats.by, 'month');
      assert.equal(stats.time_zone, 'Asia/Seoul');
      // The scene has counts the node publishes and counts it hides.
      const cells = stats.messages.rows.flatMap((r) => r.counts);
      assert.ok(cells.some((v) => v !== null && v >= stats.min_count), JSON.stringify(stats.messages));
      assert.ok(cells.some((v) => v === null), JSON.stringify(stats.messages));
      await tablesMatch(page, stats);
      assert.ok(stats.times.rows.some((r) => r.first_pull.median_s !== null), JSON.stringify(stats.times));
      // What the page shows, beyond the numbers: the marker, the periods, the labels.
      const hidden = page.locator('#stats-messages td.suppressed').first();
      assert.equal(await hidden.textContent(), '숨김');
      assert.match(await hidden.locator('span').getAttribute('title'), /5건 미만/);
      const messages = await tableValues(page, 'stats-messages');
      assert.equal(messages.caption, '표: 기관 쌍별 기간별 메시지 수');
      const periods = await page.locator('#stats-messages thead th').allTextContents();
      assert.deepEqual(periods.slice(4, -1), stats.periods.map((p) => p.label));
      assert.equal(await page.textContent('#stats-messages tbody td:nth-child(4)'), '센터 안');
      await chartsMatch(page, stats);
      await shot(page, 'stats');
    });

    await check('the statistics CSV is the same query, with the UTF-8 BOM', async () => {
      const href = await page.getAttribute('#stats-csv', 'href');
      assert.ok(href.startsWith('/v1/stats?') && href.includes('format=csv') && href.includes('by=month'), href);
      const csv = await downloadCsv(page, 'stats-csv');
      assert.ok(csv.startsWith(`${CSV_HEADER}\r\n`) || csv.startsWith(`${CSV_HEADER}\n`), csv.slice(0, 200));
      assert.match(csv, /\nmessages,suwon\/employment,suwon\/jobs,referral,within,,[^,\r\n]+,\d+\r?\n/);
      assert.match(csv, /,x\r?\n/, 'a suppressed value is written x');
    });

    await check('the statistics view follows the language toggle, charts included', async () => {
      await page.click('#lang-toggle');
      assert.equal(await page.textContent('nav button[data-view=stats]'), 'Statistics');
      assert.equal((await tableValues(page, 'stats-messages')).caption, 'Table: Messages per period by agency pair');
      assert.equal(await page.textContent('#stats-messages td.suppressed'), 'hidden');
      assert.equal(await page.textContent('#stats-messages tbody td:nth-child(4)'), 'Within the center');
      assert.equal(
        await page.textContent('#stats-chart-messages > title'),
        'Messages per period by agency pair (bar chart)',
      );
      assert.match(await page.textContent('#stats-chart-outcomes > desc'), /hidden values/);
      await tablesMatch(page, await statsJson(page));
      await page.click('#lang-toggle');
      assert.equal(await page.textContent('#stats-chart-messages > title'), '기관 쌍별 기간별 메시지 수 (막대 그래프)');
    });

    await check('by week and by day, the periods and numbers still match the node', async () => {
      for (const by of ['week', 'day']) {
        await page.selectOption('#stats-by', by);
        await submit(page, 'stats');
        const stats = await statsJson(page);
        assert.equal(stats.by, by);
        await tablesMatch(page, stats);
        await chartsMatch(page, stats);
      }
      await page.selectOption('#stats-by', 'month');
    });

    await check('the federation scope says which centers answered, and when', async () => {
      await page.selectOption('#stats-scope', 'federation');
      await submit(page, 'stats');
      assert.equal(await page.isVisible('#error'), false, await page.textContent('#error'));
      const stats = await statsJson(page);
      assert.equal(stats.scope, 'federation');
      await tablesMatch(page, stats);
      // Each center's row: its name, when it answered (KST), since when it counts, or why not.
      const rowsShown = await page.locator('#stats-centers tbody tr').evaluateAll((trs) =>
        trs.map((tr) => Array.from(tr.cells, (c) => c.textContent)),
      );
      assert.equal(rowsShown.length, stats.centers.length);
      for (const [i, c] of stats.centers.entries()) {
        const row = rowsShown[i];
        assert.equal(row[0], c.center);
        if (c.error) assert.equal(row[3], c.error, JSON.stringify(row));
        else assert.match(row[1], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+09:00$/, JSON.stringify(row));
      }
      assert.ok(stats.centers.some((c) => c.center === 'suwon' && !c.error), JSON.stringify(stats.centers));
      await page.selectOption('#stats-scope', 'center');
      await submit(page, 'stats');
    });

    await check('axe-core finds no accessibility violation on any view, in either language', async () => {
      for (const language of ['ko', 'en']) {
        if ((await page.getAttribute('html', 'lang')) !== language) await page.click('#lang-toggle');
        for (const view of VIEWS) {
          await page.click(`nav button[data-view=${view}]`);
          await submit(page, view);
          await accessible(page, `${view} (${language})`);
        }
      }
      await page.click('#lang-toggle');
    });

    assert.deepEqual(problems, [], 'no script errors, no dialogs');
    await officer.close();

    await check('a center manager sees the statistics view only, and it works', async () => {
      const manager = await contextAs(browser, env('MANAGER_CERT'), env('MANAGER_KEY'));
      const other = await manager.newPage();
      const errors = [];
      other.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
      other.on('console', (m) => {
        if (m.type() === 'error') errors.push(`console error: ${m.text()}`);
      });
      await open(other);
      assert.equal(await other.textContent('#title'), 'plusgate 센터 운영 관리자 콘솔 (통계)');
      assert.equal(await other.title(), 'plusgate 센터 운영 관리자 콘솔 (통계)');
      const tabs = await other.locator('nav button').evaluateAll((bs) => bs.filter((b) => !b.hidden).map((b) => b.dataset.view));
      assert.deepEqual(tabs, ['stats']);
      assert.equal(await other.isVisible('#view-stats'), true);
      for (const view of VIEWS.filter((v) => v !== 'stats')) {
        assert.equal(await other.isVisible(`#view-${view}`), false, view);
      }
      await submit(other, 'stats');
      assert.equal(await other.isVisible('#error'), false, await other.textContent('#error'));
      const stats = await statsJson(other);
      await tablesMatch(other, stats);
      await chartsMatch(other, stats);
      await accessible(other, 'stats for a manager (ko)');
      await other.click('#lang-toggle');
      await accessible(other, 'stats for a manager (en)');
      // The node agrees: the officer's reports are not the manager's.
      const refused = await other.evaluate(() => fetch('/v1/privacy/consents').then((r) => r.status));
      assert.equal(refused, 403);
      await shot(other, 'stats-manager');
      // The one expected error: the node's 403 to the probe above (and to the role check).
      const unexpected = errors.filter((e) => !/status of 403/.test(e));
      assert.deepEqual(unexpected, [], 'no script errors');
      await manager.close();
    });

    await check('an agency certificate does not get the console', async () => {
      const agency = await contextAs(browser, env('AGENCY_CERT'), env('AGENCY_KEY'));
      const other = await agency.newPage();
      for (const path of ['/console/', '/console/app.js', '/console/stats.js', '/v1/stats']) {
        const resp = await other.goto(`${origin}${path}`);
        assert.equal(resp.status(), 403, path);
        const body = await resp.text();
        assert.ok(!body.includes('lang-toggle') && !body.includes('LABELS'), body);
        assert.match(resp.headers()['content-type'], /^application\/problem\+json/);
      }
      await agency.close();
    });
  } finally {
    await browser.close();
  }
}

const timer = setTimeout(() => {
  console.error(`not ok - timed out during: ${step}`);
  process.exit(1);
}, 120_000);

main().then(
  () => {
    clearTimeout(timer);
    console.log('console test passed');
  },
  (e) => {
    clearTimeout(timer);
    console.error(`not ok - ${step}\n${e.stack || e}`);
    process.exit(1);
  },
);
