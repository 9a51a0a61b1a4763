// Drives Debian's chromium (headless, through playwright-core) against a running kyso node:
// the lookup page of a valid and of a revoked certification, the local file check with the
// right and with a wrong file, the page without JavaScript, a 404 and the stamp; takes
// screenshots at desktop width and at 360 px. Started by tests/public_page_browser.rs with
// one JSON argument; exits non-zero with a message on the first failed check.
//
// It asserts what a citizen relies on: the verdict texts, and that choosing a file sends
// no request at all (every request the browser makes is logged and compared).

import { chromium } from 'playwright-core';
import path from 'node:path';

const config = JSON.parse(process.argv[2]);
const origin = new URL(config.base_url).origin;
const STEP_TIMEOUT_MS = 60_000;
const screenshots = [];

function check(condition, message) {
  if (!condition) {
    throw new Error(`check failed: ${message}`);
  }
}

function log(message) {
  console.log(`ok: ${message}`);
}

const browser = await chromium.launch({
  executablePath: config.chromium,
  headless: true,
  timeout: 120_000,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-quic',
  ],
});

/** A browser context that logs every request and refuses any to another origin. */
async function newContext(options) {
  const context = await browser.newContext({ locale: 'vi-VN', ...options });
  context.setDefaultTimeout(STEP_TIMEOUT_MS);
  const record = { requests: [], offOrigin: [], consoleErrors: [] };
  context.on('request', (request) => {
    record.requests.push({
      url: request.url(),
      method: request.method(),
      bodyBytes: request.postDataBuffer()?.length ?? 0,
    });
  });
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin !== origin) {
      record.offOrigin.push(url);
      return route.abort();
    }
    return route.continue();
  });
  return { context, record };
}

async function openPage(context, record, url) {
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') {
      record.consoleErrors.push(`${message.text()} [${message.location().url}]`);
    }
  });
  page.on('pageerror', (error) => record.consoleErrors.push(String(error)));
  const response = await page.goto(url, { waitUntil: 'load' });
  return { page, response };
}

async function screenshot(page, name, fullPage = true) {
  const file = path.join(config.artifacts_dir, name);
  await page.screenshot({ path: file, fullPage });
  screenshots.push(file);
}

/** Chooses a file in the page's file check and returns the verdict the page shows. */
async function checkFile(page, record, file, expectedState) {
  const before = record.requests.length;
  await page.setInputFiles('#file-input', file);
  await page.waitForSelector(`#file-result[data-verdict="${expectedState}"]`);
  const verdict = (await page.textContent('#file-verdict')).trim();
  const detail = (await page.textContent('#file-result')).trim();
  // Give a stray request the chance to show up before counting.
  await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0))));
  const during = record.requests.slice(before);
  check(during.length === 0, `choosing a file made requests: ${JSON.stringify(during)}`);
  return { verdict, detail };
}

function checkRecord(record, label) {
  check(record.offOrigin.length === 0, `${label}: requests to other origins: ${record.offOrigin.join(', ')}`);
  const withBody = record.requests.filter((request) => request.method !== 'GET' || request.bodyBytes > 0);
  check(withBody.length === 0, `${label}: requests with a method other than GET or a body: ${JSON.stringify(withBody)}`);
  const fileName = path.basename(config.right_file);
  const naming = record.requests.filter((request) => request.url.includes(fileName) || request.url.includes(config.valid_sha256));
  check(naming.length === 0, `${label}: a request named the file or its hash: ${JSON.stringify(naming)}`);
  check(record.consoleErrors.length === 0, `${label}: console errors (CSP violations?): ${record.consoleErrors.join(' | ')}`);
  log(`${label}: ${record.requests.length} requests, all GET to ${origin}, none with a body`);
}

async function validCertification(viewport, suffix) {
  const { context, record } = await newContext({ viewport });
  const { page, response } = await openPage(context, record, `${config.base_url}/v/${config.valid_code}`);
  check(response.status() === 200, `valid page status ${response.status()}`);
  check(response.headers()['content-security-policy']?.includes("connect-src 'none'"), 'page has the CSP');
  const status = (await page.textContent('#status .verdict-title')).trim();
  check(status === config.texts.status_valid, `valid status text ${JSON.stringify(status)}`);
  check((await page.getAttribute('#status', 'data-status')) === 'valid', 'valid data-status');
  await page.waitForSelector('#file-check:not([hidden])');
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check(width <= viewport.width, `page is ${width}px wide in a ${viewport.width}px viewport`);
  await screenshot(page, `valid-${suffix}.png`);
  log(`valid page (${suffix}): "${status}"`);

  const match = await checkFile(page, record, config.right_file, 'match');
  check(match.verdict === config.texts.check_match, `right file verdict ${JSON.stringify(match.verdict)}`);
  await screenshot(page, `valid-right-file-${suffix}.png`);
  log(`right file (${suffix}): "${match.verdict}"`);

  const mismatch = await checkFile(page, record, config.wrong_file, 'mismatch');
  check(mismatch.verdict === config.texts.check_mismatch, `wrong file verdict ${JSON.stringify(mismatch.verdict)}`);
  check(mismatch.detail.includes(config.wrong_sha256), `the wrong file's hash is shown: ${mismatch.detail}`);
  await screenshot(page, `valid-wrong-file-${suffix}.png`);
  log(`wrong file (${suffix}): "${mismatch.verdict}"`);
  checkRecord(record, `valid page ${suffix}`);
  await context.close();
}

async function revokedCertification(viewport, suffix) {
  const { context, record } = await newContext({ viewport });
  const { page } = await openPage(context, record, `${config.base_url}/v/${config.revoked_code}`);
  const status = (await page.textContent('#status .verdict-title')).trim();
  check(status === config.texts.status_revoked, `revoked status text ${JSON.stringify(status)}`);
  const reason = await page.textContent('#status .revocation');
  check(reason.includes(config.revocation_reason), `revocation reason shown: ${reason}`);
  await screenshot(page, `revoked-${suffix}.png`);
  log(`revoked page (${suffix}): "${status}", reason "${config.revocation_reason}"`);
  const match = await checkFile(page, record, config.revoked_file, 'match-revoked');
  check(match.verdict === config.texts.check_match_revoked, `revoked file verdict ${JSON.stringify(match.verdict)}`);
  await screenshot(page, `revoked-right-file-${suffix}.png`);
  log(`right file of a revoked certification (${suffix}): "${match.verdict}"`);
  checkRecord(record, `revoked page ${suffix}`);
  await context.close();
}

async function withoutJavaScript() {
  const { context, record } = await newContext({ viewport: { width: 360, height: 800 }, javaScriptEnabled: false });
  const { page } = await openPage(context, record, `${config.base_url}/v/${config.valid_code}`);
  const status = (await page.textContent('#status .verdict-title')).trim();
  check(status === config.texts.status_valid, `status without JavaScript ${JSON.stringify(status)}`);
  check(!(await page.isVisible('#file-check')), 'the file check stays hidden without JavaScript');
  check((await page.textContent('body')).includes(config.texts.check_without_javascript), 'the noscript advice is shown');
  await screenshot(page, 'valid-no-javascript-360.png');
  log(`without JavaScript: "${status}" and the advice to compare the SHA-256 by hand`);
  checkRecord(record, 'page without JavaScript');
  await context.close();
}

async function otherPages() {
  const { context, record } = await newContext({ viewport: { width: 360, height: 800 } });
  const { page, response } = await openPage(context, record, `${config.base_url}/v/0000-0000-0000-0000`);
  check(response.status() === 404, `unknown code status ${response.status()}`);
  const title = (await page.textContent('#message-title')).trim();
  check(title === config.texts.not_found_title, `404 title ${JSON.stringify(title)}`);
  await screenshot(page, 'not-found-360.png');
  log(`unknown code: 404 "${title}"`);
  // Chromium reports the deliberate 404 as a failed load; nothing else may fail.
  record.consoleErrors = record.consoleErrors.filter((error) => !error.includes('/v/0000-0000-0000-0000'));
  await page.goto(`${config.base_url}/v/${config.valid_code}?lang=en`);
  check((await page.textContent('#status .verdict-title')).trim() === 'Valid', 'English page');
  await screenshot(page, 'valid-english-360.png');
  checkRecord(record, 'other pages');
  await context.close();

  // An SVG document has no page height to scroll: shoot the viewport, sized to the stamp
  // (86 × 34 mm at 96 dpi is 325 × 129 px), at three device pixels per CSS pixel.
  const stampContext = await newContext({ viewport: { width: 330, height: 132 }, deviceScaleFactor: 3 });
  const { page: stampPage, response: stamp } = await openPage(
    stampContext.context,
    stampContext.record,
    `${config.base_url}/v/${config.valid_code}/stamp.svg`,
  );
  check(stamp.headers()['content-type'] === 'image/svg+xml', 'the stamp is SVG');
  await screenshot(stampPage, 'stamp.png', false);
  log('English page and stamp rendered');
  checkRecord(stampContext.record, 'stamp');
  await stampContext.context.close();
}

try {
  await validCertification({ width: 1280, height: 900 }, 'desktop');
  await validCertification({ width: 360, height: 800 }, '360');
  await revokedCertification({ width: 1280, height: 900 }, 'desktop');
  await revokedCertification({ width: 360, height: 800 }, '360');
  await withoutJavaScript();
  await otherPages();
  for (const file of screenshots) {
    console.log(`screenshot: ${file}`);
  }
  console.log(`browser check passed (chromium ${browser.version()}, ${screenshots.length} screenshots)`);
} finally {
  await browser.close();
}
