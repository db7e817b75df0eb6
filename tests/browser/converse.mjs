// Two Converse.js users in Debian's Chromium (headless, driven by playwright-core): alice sends
// bob an image through the chat toolbar's file upload (XEP-0363: a slot on the node, a
// cross-origin PUT), bob's page shows it inline (a cross-origin GET of the URL bob received).
// Run by tests/tests/browser.rs:
//   node converse.mjs <page URL> <image file> <screenshot directory>
// Prints one JSON line: the URLs each page rendered, each request the pages made to the node and
// each CORS preflight Chromium sent before one.
import { chromium } from 'playwright-core';
import path from 'node:path';

const [pageUrl, image, shots] = process.argv.slice(2);
const nodeRequests = [];
const preflights = [];
const consoleLines = [];

// Playwright starts Chromium with a new, empty --user-data-dir of its own.
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});

const loopback = (url) => ['127.0.0.1', 'localhost'].includes(url.hostname);

/** A page logged in as `user`, its roster shown. */
async function login(user) {
  // A context (cookies, storage) of its own: Converse keeps its session in the origin's storage.
  const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
  // Nothing leaves the machine: Converse's login page shows its sponsors' logos from conversejs.org.
  await context.route((url) => !loopback(url), (route) => route.abort());
  const page = await context.newPage();
  page.on('console', (m) => consoleLines.push(`${user}: ${m.type()}: ${m.text()}`));
  // The requests to another loopback origin than the page's: the node's.
  const toNode = (r) => loopback(new URL(r.url())) && !r.url().startsWith(new URL(pageUrl).origin);
  page.on('requestfinished', async (r) => {
    if (toNode(r)) {
      const response = await r.response();
      const cors = response?.headers()['access-control-allow-origin'];
      nodeRequests.push({ user, method: r.method(), url: r.url(), status: response?.status(), allow_origin: cors });
    }
  });
  page.on('requestfailed', (r) => {
    if (toNode(r)) {
      nodeRequests.push({ user, method: r.method(), url: r.url(), failure: r.failure()?.errorText });
    }
  });
  // CORS preflights are not Playwright requests: Chromium's DevTools protocol shows them.
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  const asked = new Map();
  cdp.on('Network.requestWillBeSent', (e) => {
    if (e.request.method === 'OPTIONS') asked.set(e.requestId, e.request);
  });
  cdp.on('Network.responseReceived', (e) => {
    const request = asked.get(e.requestId);
    if (request) {
      const lower = (headers) => Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
      preflights.push({ user, url: request.url, request: lower(request.headers), status: e.response.status, response: lower(e.response.headers) });
    }
  });
  await page.goto(`${pageUrl}?jid=${user}@localhost`);
  return page;
}

/** Opens the chat with `contact` from the roster. */
async function openChat(page, contact) {
  await page.locator('converse-roster .list-item-link', { hasText: contact }).first().click({ timeout: 30000 });
  await page.locator(`converse-chat[jid="${contact}@localhost"] converse-chat-toolbar`).waitFor({ timeout: 30000 });
}

let result;
try {
  const bob = await login('bob');
  const alice = await login('alice');
  await openChat(alice, 'bob');
  await alice.locator('converse-chat-toolbar input.fileupload').setInputFiles(image);
  const sent = alice.locator('converse-chat-message img').first();
  await sent.waitFor({ timeout: 30000 });

  await openChat(bob, 'alice');
  const received = bob.locator('converse-chat-message img').first();
  await received.waitFor({ timeout: 30000 });
  await bob.waitForFunction((img) => img.complete && img.naturalWidth > 0, await received.elementHandle(), { timeout: 30000 });
  const bobShot = path.join(shots, 'converse-bob.png');
  const aliceShot = path.join(shots, 'converse-alice.png');
  await bob.screenshot({ path: bobShot });
  await alice.screenshot({ path: aliceShot });
  result = {
    alice_img: await sent.getAttribute('src'),
    bob_img: await received.getAttribute('src'),
    bob_img_width: await received.evaluate((img) => img.naturalWidth),
    screenshots: [bobShot, aliceShot],
  };
} catch (e) {
  for (const [i, context] of browser.contexts().entries()) {
    await context.pages()[0]?.screenshot({ path: path.join(shots, `failure-${i}.png`) }).catch(() => {});
  }
  console.error(consoleLines.join('\n'));
  console.error(JSON.stringify({ nodeRequests, preflights }));
  throw e;
} finally {
  await browser.close();
}
const errors = consoleLines.filter((l) => / (error|debug): /.test(l) && /HEAD|CORS|Access-Control/.test(l));
console.log(JSON.stringify({ ...result, node_requests: nodeRequests, preflights, errors }));
