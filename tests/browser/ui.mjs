// Drives the `lockstep run --ui` page in Debian's Chromium and checks that it is live.
//
//   node tests/browser/ui.mjs <url> <screenshot.png>
//
// Checks: every node of GET <url>/api/graph renders as a visible [data-node=NAME]
// containing its name; the first source's out-NAME counter grows between two
// reads at least 1 s apart and its rate-NAME shows a number > 0 at some point;
// the frontier shows a number. Saves a full-page screenshot, prints one JSON
// line to stdout and exits 0; on failure prints the reason to stderr and exits 1.
// The browser is $CHROMIUM or /usr/bin/chromium; the whole run is capped at 60 s.
import { chromium } from 'playwright-core';

const TOTAL_MS = 60_000;
const GROW_MS = 20_000;   // how long the first source may take to count up

class Failure extends Error {}
const fail = (msg) => { throw new Failure(msg); };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const [url0, shot] = process.argv.slice(2);
if (!url0 || !shot) {
  console.error('usage: node tests/browser/ui.mjs <url> <screenshot.png>');
  process.exit(2);
}
const base = url0.replace(/\/+$/, '');

let browser = null;
const deadline = setTimeout(async () => {
  console.error(`ui test: timed out after ${TOTAL_MS / 1000} s`);
  await browser?.close().catch(() => {});
  process.exit(1);
}, TOTAL_MS);

/** Polls `read` until `ok(value)` or `ms` pass; returns the last value read. */
async function poll(read, ok, ms, every = 200) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (ok(v) || Date.now() >= end) return v;
    await sleep(every);
  }
}

async function main() {
  const res = await fetch(`${base}/api/graph`).catch((e) => fail(`GET ${base}/api/graph: ${e.cause?.message ?? e.message}`));
  if (!res.ok) fail(`GET ${base}/api/graph: HTTP ${res.status}`);
  const graph = await res.json();
  const names = (graph.nodes ?? []).map((n) => n.name);
  if (!names.length) fail('/api/graph lists no nodes');
  const source = graph.nodes.find((n) => n.kind === 'source');
  if (!source) fail('/api/graph lists no source node');

  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  await page.goto(`${base}/`, { waitUntil: 'domcontentloaded', timeout: 15_000 });

  const sel = (attr, v) => `[${attr}=${JSON.stringify(v)}]`;
  for (const name of names) {
    const el = page.locator(sel('data-node', name));
    await el.waitFor({ state: 'visible', timeout: 10_000 })
      .catch(() => fail(`node ${JSON.stringify(name)}: no visible [data-node] element`));
    const text = await el.textContent();
    if (!text.includes(name)) fail(`node ${JSON.stringify(name)}: element text ${JSON.stringify(text)} lacks the name`);
  }

  const out = page.locator(sel('data-testid', `out-${source.name}`));
  const rate = page.locator(sel('data-testid', `rate-${source.name}`));
  const readOut = async () => { const t = (await out.textContent()).trim(); return /^\d+$/.test(t) ? Number(t) : null; };
  let rateSeen = 0;
  const readRate = async () => { const r = parseFloat(await rate.textContent()); if (r > 0) rateSeen = r; };

  const outFirst = await poll(readOut, (v) => v !== null, 10_000);
  if (outFirst === null) fail(`out-${source.name}: shows ${JSON.stringify(await out.textContent())}, not an integer`);
  const firstAt = Date.now();
  await readRate();
  const outSecond = await poll(async () => {
    await readRate();
    return Date.now() - firstAt >= 1000 ? readOut() : outFirst;
  }, (v) => v > outFirst && rateSeen > 0, GROW_MS);
  if (!(outSecond > outFirst)) fail(`out-${source.name}: did not grow in ${GROW_MS / 1000} s (${outFirst} then ${outSecond})`);
  if (!(rateSeen > 0)) fail(`rate-${source.name}: never showed a number > 0 (last ${JSON.stringify(await rate.textContent())})`);

  const frontier = page.locator('[data-testid="frontier"]');
  const ft = await poll(async () => (await frontier.textContent()).trim(), (t) => /^\d+$/.test(t), 5_000);
  if (!/^\d+$/.test(ft)) fail(`frontier: shows ${JSON.stringify(ft)}, not a number`);
  if (pageErrors.length) fail(`page script errors: ${pageErrors.join('; ')}`);

  await page.screenshot({ path: shot, fullPage: true });
  const updates = Number(await page.evaluate(() => document.body.dataset.updates));
  return { ok: true, nodes: names, out_first: outFirst, out_second: outSecond, rate: rateSeen, frontier: Number(ft), updates };
}

let code = 0;
try {
  console.log(JSON.stringify(await main()));
} catch (e) {
  console.error(`ui test: ${e instanceof Failure ? e.message : e.stack ?? e}`);
  code = 1;
} finally {
  await browser?.close().catch(() => {});
  clearTimeout(deadline);
}
process.exit(code);
