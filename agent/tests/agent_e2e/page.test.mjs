// Headless Chromium test of the agent payment page (playwright-core driving Debian chromium).
// Started by tests/agent_e2e_fake.rs / tests/agent_e2e_asterisk.rs, which run the PBX side:
// this script prints `NEED <step>` when the simulated customer must act (or the PBX must go
// down/up) and waits for `OK` on stdin. It exits non-zero on the first failed check.
//
// env: PAGE_URL (signed link), BAD_URL (tampered link), UNKNOWN_URL (signed, unknown call),
//      SHOT_DIR (screenshots), PBX_RESTART=1 (also test the PBX going away and coming back),
//      CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import readline from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const PAGE_URL = process.env.PAGE_URL;
const SHOT_DIR = process.env.SHOT_DIR || '.';
const T = 60000;
const PAN = '4242424242424242';

const rl = readline.createInterface({ input: process.stdin });
const lines = rl[Symbol.asyncIterator]();
async function need(step) {
  console.log('NEED ' + step);
  const { value, done } = await lines.next();
  if (done || value.trim() !== 'OK') throw new Error('harness did not do ' + step + ': ' + value);
}
function log(msg) { console.log('# ' + msg); }

const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sp-agent-chromium-'));
const ctx = await chromium.launchPersistentContext(userDir, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 320, height: 900 },
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

let failed = false;
try {
  const page = ctx.pages()[0] || await ctx.newPage();
  const consoleErrors = [];
  page.on('requestfailed', (r) => consoleErrors.push('request failed: ' + r.url()));
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  const shot = async (name) => {
    await page.screenshot({ path: path.join(SHOT_DIR, name + '.png'), fullPage: true });
    log('screenshot ' + name);
  };
  const text = (sel) => page.evaluate((s) => (document.querySelector(s) || {}).textContent || '', sel);
  // Polls with page.evaluate (Playwright's waitForFunction evals in the page, which the
  // page's CSP rightly forbids: no 'unsafe-eval').
  const poll = async (fn, arg, what) => {
    const end = Date.now() + T;
    for (;;) {
      if (await page.evaluate(fn, arg)) return;
      if (Date.now() > end) throw new Error(what);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const waitText = async (sel, re, what) => {
    const end = Date.now() + T;
    for (;;) {
      const t = await text(sel);
      if (re.test(t)) return;
      if (Date.now() > end) throw new Error(what + ': ' + sel + ' never matched ' + re + ' (now: ' + JSON.stringify(t) + ')');
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const visible = async (sel) => page.evaluate((s) => {
    const el = document.querySelector(s);
    return !!el && !el.hidden && el.getClientRects().length > 0;
  }, sel);
  const card = 'li[data-field="payment-card-number"]';

  // ---- refused links first: clear pages, no data
  const bad = await page.goto(process.env.BAD_URL);
  if (bad.status() !== 403) throw new Error('tampered link: HTTP ' + bad.status());
  await waitText('h1', /Access refused/, 'tampered link page');
  await shot('agent-07-tampered-link');
  const unknown = await page.goto(process.env.UNKNOWN_URL);
  if (unknown.status() !== 404) throw new Error('unknown call: HTTP ' + unknown.status());
  await waitText('h1', /No such call/, 'unknown call page');
  await shot('agent-08-unknown-call');

  // ---- the signed page: off
  consoleErrors.length = 0; // the refused pages above logged their 403/404 on purpose
  const resp = await page.goto(PAGE_URL);
  if (resp.status() !== 200) throw new Error('page: HTTP ' + resp.status());
  await waitText('#mode', /Not secure/, 'initial state');
  await page.waitForSelector('#b-start:not([disabled])', { timeout: T });
  // the signed link was exchanged for the HttpOnly cookie: no token left in the address bar,
  // and a second use of the same link (by anyone but this browser) is refused
  if (new URL(page.url()).search !== '') throw new Error('token left in the URL: ' + page.url());
  if ((await page.evaluate(() => document.cookie)) !== '') throw new Error('session cookie readable by script');
  {
    // someone else with the link (say from a proxy log): no cookie, refused
    const again = await fetch(PAGE_URL, { redirect: 'manual' });
    if (again.status !== 403) throw new Error('second use of the link: HTTP ' + again.status);
  }
  if (await visible('#controls')) throw new Error('call-controls notice shown while not secure');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth);
  if (overflow > 320) throw new Error('page wider than a 320 px iframe: ' + overflow);
  await shot('agent-01-off');

  // ---- Start payment with the keyboard only (Tab to the real button, Enter)
  let focused = '';
  for (let i = 0; i < 30 && focused !== 'b-start'; i++) {
    await page.keyboard.press('Tab');
    focused = await page.evaluate(() => document.activeElement && document.activeElement.id);
  }
  if (focused !== 'b-start') throw new Error('Start payment is not reachable with Tab');
  await page.keyboard.press('Enter');
  await waitText('#mode', /Secure/, 'secure state after Start');
  await waitText(card + ' .f-status', /keying/, 'card number being captured');
  if (!(await visible('#controls'))) throw new Error('no "call controls disabled" notice while secure');
  await waitText('#controls', /Call controls disabled/, 'notice text');
  const live = await page.evaluate(() => document.getElementById('progress').getAttribute('aria-live'));
  if (live !== 'polite') throw new Error('progress region is not aria-live=polite');
  await shot('agent-02-secure');

  // ---- a wrong card number: the invalid reason is shown
  await need('wrong-card');
  await waitText(card + ' .f-error', /Invalid card number/, 'invalid card reason');
  await shot('agent-03-invalid-card');

  // ---- masked progress and brand while the customer keys (in-band tones)
  await page.evaluate((s) => { window.__cardRow = document.querySelector(s); }, card);
  await need('partial-card');
  await waitText(card + ' .f-detail', /^6 digits/, 'digit count');
  await waitText(card + ' .f-brand', /Visa/, 'brand');
  await waitText(card + ' .f-masked', /^\*{6}$/, 'masked progress');
  const sameRow = await page.evaluate((s) => document.querySelector(s) === window.__cardRow, card);
  if (!sameRow) throw new Error('the field row was re-created while digits arrived (flashing)');
  await waitText('#progress', /Card number: 6 digits entered/, 'live region');
  await shot('agent-04-progress');

  // ---- Re-enter the card number
  await page.click(card + ' .f-reenter');
  await waitText(card + ' .f-detail', /^0 digits/, 're-enter resets the count');

  // ---- the full card (+ expiry, security code)
  await need('full-card');
  await waitText(card + ' .f-status', /Valid/, 'card valid');
  await waitText(card + ' .f-detail', /ending 4242/, 'last 4');
  await waitText('li[data-field="expiration-date"] .f-status', /Valid/, 'expiry valid');
  await waitText('li[data-field="security-code"] .f-status', /Valid/, 'security code valid');
  await waitText('#progress', /Ready to submit/, 'ready');
  await page.waitForSelector('#b-submit:not([disabled])', { timeout: T });
  await shot('agent-05-complete');

  // ---- Submit: the connector answers, the page shows success with only the last 4
  await page.click('#b-submit');
  await waitText('#result-text', /Payment successful: Visa card ending 4242/, 'payment success');
  await waitText('#mode', /Payment submitted/, 'submitted state');
  await shot('agent-06-success');
  const all = await page.evaluate(() => document.documentElement.outerHTML + document.body.innerText);
  for (const leak of [PAN, PAN.slice(0, 12), '424242424242', '12/30', '1230']) {
    if (all.includes(leak)) throw new Error('page shows more than the module sends: ' + leak);
  }

  if (process.env.PBX_RESTART === '1') {
    await need('pbx-down');
    await waitText('#conn', /Lost connection to the phone system/, 'PBX loss reported');
    if (!(await page.locator('#b-restart').isDisabled())) throw new Error('buttons active while the PBX is away');
    await shot('agent-09-pbx-down');
    await need('pbx-up');
    await poll(() => document.getElementById('conn').hidden, null, 'PBX banner still shown after reconnect');
    await waitText('#mode', /Payment submitted/, 'true state after reconnect');
    await waitText('#result-text', /ending 4242/, 'outcome after reconnect');
    log('PBX reconnect shown');
  }

  // ---- error texts: input timeout and a connector decline (fake PBX only)
  if (process.env.ERROR_STEPS === '1') {
    await page.click('#b-restart');
    await waitText(card + ' .f-status', /keying/, 'restart captures the card again');
    await need('timeout');
    await waitText(card + ' .f-error', /Input timeout/, 'input timeout text');
    await shot('agent-10-input-timeout');
    await need('declined-card');
    await waitText('#progress', /Ready to submit/, 'ready again');
    await page.click('#b-submit');
    await waitText('#result-text', /Payment declined: Your card was declined\. \(card_declined\)/, 'decline text');
    await waitText('#notice', /declined by the payment processor: Your card was declined/, 'decline notice');
    await waitText('#mode', /Payment declined/, 'declined state');
    await shot('agent-11-declined');
  }

  // ---- hostile text in an event is shown as text, never parsed as HTML (fake PBX only; last,
  // so the screenshots above show the page as an agent sees it)
  if (process.env.XSS_STEP === '1') {
    await need('html-error');
    await waitText('#notice', /<img src=x onerror=/, 'hostile message shown as text');
    const parsed = await page.evaluate(() => !!document.querySelector('#notice *') || window.__xss === 1);
    if (parsed) throw new Error('event text was parsed as HTML');
  }

  // ---- End secure mode: back to a normal call
  await page.click('#b-stop');
  await waitText('#mode', /Not secure/, 'off after End secure mode');
  if (await visible('#controls')) throw new Error('call-controls notice still shown after the end');

  if (consoleErrors.length) throw new Error('console errors: ' + consoleErrors.join(' | '));
  console.log('PASS');
} catch (e) {
  failed = true;
  console.log('FAIL ' + (e && e.stack ? e.stack : e));
  try {
    const p = ctx.pages()[0];
    if (p) await p.screenshot({ path: path.join(SHOT_DIR, 'agent-failure.png'), fullPage: true });
  } catch (_) { /* ignore */ }
} finally {
  await ctx.close();
  fs.rmSync(userDir, { recursive: true, force: true });
  rl.close();
}
process.exit(failed ? 1 : 0);
