// Browser test of the privacy officer's console: Debian's headless Chromium driven by
// playwright-core, presenting the officer's client certificate to a real node that
// tests/node/console.rs started and filled. Exits 0 if every check holds, 1 naming the
// first that failed.
//
// Environment (set by tests/node/console.rs):
//   PLUSGATE_URL               https://127.0.0.1:PORT of the node
//   OFFICER_CERT, OFFICER_KEY  the officer's certificate and key (PEM files)
//   AGENCY_CERT, AGENCY_KEY    an agency's, which must not get the console
//   SUBJECT                    a subject with consents and messages
//   CONSENT_ID                 a granted consent of SUBJECT
//   WITHDRAWN_ID               a withdrawn consent; its reason is markup that must stay text
//   MESSAGE_IDS                comma-separated ids of messages about SUBJECT
//   SCREENSHOT_DIR             optional: where to leave screenshots of the views
//   CHROMIUM                   optional: the browser (default /usr/bin/chromium)

import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

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
function contextAs(browser, cert, key) {
  return browser.newContext({
    // The development CA is self-signed; the node's identity is not what is tested here.
    ignoreHTTPSErrors: true,
    clientCertificates: [{ origin, certPath: cert, keyPath: key }],
    locale: 'ko-KR',
  });
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
    });

    await check('the language toggle switches every label and the lang attribute', async () => {
      await page.click('#lang-toggle');
      assert.equal(await page.getAttribute('html', 'lang'), 'en');
      assert.equal(await page.textContent('#title'), 'plusgate privacy officer console');
      assert.equal(await page.textContent('nav button[data-view=withdrawals]'), 'Withdrawals');
      await page.click('#lang-toggle');
      assert.equal(await page.getAttribute('html', 'lang'), 'ko');
      assert.equal(await page.textContent('nav button[data-view=withdrawals]'), '동의 철회');
    });

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
      assert.equal(found[0][2], 'granted');
      const header = await page.locator('#consents-result th').first().textContent();
      assert.equal(header, '동의 ID');
      const href = await page.getAttribute('#consents-csv', 'href');
      assert.ok(href.includes('format=csv') && href.includes(`subject=${subject}`), href);
      assert.equal(await page.isVisible('#consents-csv'), true);
      // The link is a real download of the same report as CSV.
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.click('#consents-csv'),
      ]);
      const path = await download.path();
      const fs = await import('node:fs');
      const csv = fs.readFileSync(path, 'utf8');
      assert.ok(csv.startsWith('id,subject,collected_by'), csv);
      assert.ok(csv.includes(`\r\n${consentId},${subject},`), csv);
      await shot(page, 'consents');
    });

    await check('a refused query shows the node\'s reason', async () => {
      await page.fill('#consents-subject', '');
      await page.selectOption('#consents-status', '');
      await page.fill('#consents-agency', 'not an agency');
      await submit(page, 'consents');
      assert.equal(await page.isVisible('#error'), true);
      const error = await page.textContent('#error');
      assert.ok(error.includes('(400)') && error.includes('`agency`'), error);
      await page.fill('#consents-agency', '');
      // The browser logs the refused request; that one is expected.
      assert.equal(problems.length, 1, JSON.stringify(problems));
      assert.match(problems[0], /status of 400/);
      problems.length = 0;
    });

    await check('the withdrawal shows in withdrawals, its reason as plain text', async () => {
      await page.click('nav button[data-view=withdrawals]');
      assert.equal(await page.isVisible('#view-withdrawals'), true);
      assert.equal(await page.isVisible('#error'), false);
      await submit(page, 'withdrawals');
      const found = await rows(page, 'withdrawals-result');
      const row = found.find((r) => r[1] === withdrawnId);
      assert.ok(row, JSON.stringify(found));
      assert.ok(row[6].includes('<img'), `the reason is shown as written: ${row[6]}`);
      assert.equal(await page.locator('#withdrawals-result img').count(), 0, 'no markup from data');
      await shot(page, 'withdrawals');
    });

    await check('the refusals view answers (none here) in the chosen date range', async () => {
      await page.click('nav button[data-view=refusals]');
      await page.fill('#refusals-from', '2020-01-01');
      await page.fill('#refusals-to', '2099-12-31');
      await submit(page, 'refusals');
      assert.equal(await page.textContent('#refusals-result'), '해당하는 기록이 없습니다.');
      const href = await page.getAttribute('#refusals-csv', 'href');
      assert.ok(href.includes('from=2020-01-01') && href.includes('to=2099-12-31'), href);
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
      assert.ok(found.every((r) => r[8].startsWith('urn:plusgate:agency:suwon:welfare')), 'first pulled by');
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
      assert.match(status['체크포인트 위치 (seq)'], /^\d+ \(\d+\)$/);
      assert.match(status['체크포인트 해시'], /^[0-9a-f]{64}$/);
      assert.match(status['최신 해시'], /^[0-9a-f]{64}$/);
      await page.click('#lang-toggle');
      assert.equal(await page.textContent('#audit-status dd.ok'), 'OK (verified)');
      await shot(page, 'audit');
      await page.click('#lang-toggle');
    });

    assert.deepEqual(problems, [], 'no script errors, no dialogs');
    await officer.close();

    await check('an agency certificate does not get the console', async () => {
      const agency = await contextAs(browser, env('AGENCY_CERT'), env('AGENCY_KEY'));
      const other = await agency.newPage();
      for (const path of ['/console/', '/console/app.js']) {
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
