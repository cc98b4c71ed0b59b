// Opens a gavel HTML report in headless Debian chromium via playwright-core
// and prints, as one JSON line, what a reader sees: the figures (from their
// ids and data-* attributes), whether each part rendered with a size, console
// errors, page errors, any request that left the file (there must be none),
// and, at a 1280 px wide window, every element wider than the window or
// clipping its content (there must be none).
// Usage: node read_report.cjs <playwright-core dir> <chromium path> <report.html>
'use strict';
const [pwDir, chromiumPath, reportPath] = process.argv.slice(2);
const { chromium } = require(pwDir);

(async () => {
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  const out = { consoleErrors: [], pageErrors: [], external: [] };
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => { if (m.type() === 'error') out.consoleErrors.push(m.text()); });
    page.on('pageerror', (e) => out.pageErrors.push(String(e)));
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith('file:')) return route.continue();
      out.external.push(url);
      return route.abort();
    });
    await page.goto('file://' + reportPath, { waitUntil: 'load' });
    out.title = await page.title();
    out.figures = await page.evaluate(() => {
      const val = (id) => { const e = document.getElementById(id); return e ? e.dataset.value : null; };
      const box = (sel) => { const e = document.querySelector(sel); if (!e) return null; const r = e.getBoundingClientRect(); return { w: r.width, h: r.height }; };
      const rows = (sel) => [...document.querySelectorAll(sel)].map((r) => ({ ...r.dataset, text: r.innerText }));
      return {
        total: val('total'), allowed: val('allowed'), denied: val('denied'), denialRate: val('denial-rate'),
        denialRateText: document.getElementById('denial-rate')?.innerText,
        bucketSeconds: val('bucket-seconds'),
        buckets: rows('#volume g.bucket'),
        reasons: rows('#reasons tr[data-reason]'),
        users: rows('#users tr[data-name]'),
        agents: rows('#agents tr[data-name]'),
        auditRequired: val('audit-required'), failOpen: val('fail-open'),
        decisions: [...document.querySelectorAll('code[data-decision]')].map((c) => c.textContent),
        tools: rows('#tools tr[data-tool]'),
        latency: rows('#latency tr[data-metric]'),
        revisions: rows('#revisions tr[data-bundle]'),
        overflow: (() => {
          const width = document.documentElement.clientWidth;
          const name = (e) => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && typeof e.className === 'string' ? '.' + e.className : '');
          // Open every <details> so what it holds is measured too.
          document.querySelectorAll('details').forEach((d) => { d.open = true; });
          return [...document.querySelectorAll('main, section, table, tr, td, th, code, p, div, h1, h2')]
            .filter((e) => e.getBoundingClientRect().right > width + 0.5 || e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible')
            .map((e) => name(e) + ' right=' + Math.round(e.getBoundingClientRect().right) + ' scroll=' + e.scrollWidth + '/' + e.clientWidth)
            .concat(document.documentElement.scrollWidth > width ? ['page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + width] : []);
        })(),
        boxes: { volume: box('#volume'), reasons: box('#reasons'), tools: box('#tools'), latency: box('#latency'), revisions: box('#revisions') },
      };
    });
  } finally {
    await browser.close();
  }
  process.stdout.write(JSON.stringify(out) + '\n');
})().catch((e) => { console.error(String(e && e.stack || e)); process.exit(1); });
