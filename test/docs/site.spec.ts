import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { freePort } from '../support/free-port.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const built = new URL('../../docs/.vitepress/dist/index.html', import.meta.url);
const screenshots = new URL('../../docs/public/screenshots/', import.meta.url);
// Debian's package (`apt-get install chromium`); CHROMIUM_PATH points at another build.
const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/** `vitepress serve` on the built site, resolved once it says where it listens. */
async function serveSite(): Promise<{ url: string; server: ChildProcess }> {
  const port = await freePort();
  const server = spawn(`${root}node_modules/.bin/vitepress`, ['serve', 'docs', '--port', String(port), '--strictPort'], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  server.stdout!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    server.once('exit', (code) => reject(new Error(`vitepress serve exited (${code}): ${output}`)));
    server.stdout!.on('data', (chunk: string) => {
      output += chunk;
      if (output.includes('Built site served at')) resolve();
    });
  });
  return { url: `http://127.0.0.1:${port}`, server };
}

/** Opens a page of the site and collects what went wrong while it loaded: failed requests, HTTP errors, console errors. */
async function open(browser: Browser, url: string): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.setDefaultTimeout(10_000);
  const problems: string[] = [];
  page.on('requestfailed', (request) => problems.push(`${request.url()}: ${request.failure()?.errorText}`));
  page.on('response', (response) => {
    if (response.status() >= 400) problems.push(`${response.url()}: HTTP ${response.status()}`);
  });
  page.on('console', (message) => {
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  await page.goto(url, { waitUntil: 'networkidle' });
  return { page, problems };
}

describe('the built docs site in headless Chromium', () => {
  let site: { url: string; server: ChildProcess };
  let browser: Browser;

  beforeAll(async () => {
    if (!existsSync(built)) throw new Error('No built site in docs/.vitepress/dist: run `npm run docs:build` first');
    if (!existsSync(executablePath)) throw new Error(`No Chromium at ${executablePath}: apt-get install chromium, or set CHROMIUM_PATH`);
    mkdirSync(screenshots, { recursive: true });
    site = await serveSite();
    browser = await chromium.launch({
      executablePath,
      headless: true,
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--no-first-run'],
    });
  });

  afterAll(async () => {
    await browser?.close();
    if (site && site.server.exitCode === null) {
      site.server.kill();
      await once(site.server, 'exit');
    }
  });

  it('shows the getting-started page with its example and every guide page in the sidebar', async () => {
    const { page, problems } = await open(browser, `${site.url}/getting-started`);
    expect(await page.locator('h1').first().textContent()).toContain('Getting started');
    await expect(page.locator('.vp-doc div[class*="language-ts"]').first().textContent()).resolves.toContain('@InjectConnection()');
    const sidebar = await page.locator('.VPSidebar a').allTextContents();
    for (const title of ['Concepts', 'Configuration', 'Transactions', 'Health checks', 'Metrics', 'Reliability', 'Scaling out', 'Failover', 'Testing your app', 'Performance', 'Troubleshooting', 'Migration']) {
      expect(sidebar.map((text) => text.trim())).toContain(title);
    }
    expect(problems).toEqual([]);
    await page.screenshot({ path: fileURLToPath(new URL('getting-started.png', screenshots)) });
  });

  it('shows the API reference generated from the doc comments', async () => {
    const { page, problems } = await open(browser, `${site.url}/api/`);
    const modules = await page.locator('.vp-doc a:not(.header-anchor)').allTextContents();
    // One module per entry of the package's exports map, as the reference lists them (by name).
    const exported = Object.keys((JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { exports: object }).exports);
    expect(modules).toEqual(exported.map((entry) => `nestjs-pg-pool${entry.slice(1)}`).sort());
    await page.locator('.vp-doc a:not(.header-anchor)', { hasText: /^nestjs-pg-pool$/ }).click();
    await page.locator('.vp-doc a:not(.header-anchor)', { hasText: /^PoolModule$/ }).click();
    await page.waitForURL(/\/classes\/PoolModule$/);
    // The site routes in the browser: the address changes before the new page is drawn.
    await page.locator('.vp-doc h1', { hasText: 'PoolModule' }).waitFor();
    await expect(page.locator('.vp-doc').textContent()).resolves.toMatch(/forRootAsync\(\)/);
    expect(problems).toEqual([]);
    await page.screenshot({ path: fileURLToPath(new URL('api.png', screenshots)) });
  });

  it("draws the diagram of a request's life on the concepts page", async () => {
    const { page, problems } = await open(browser, `${site.url}/concepts`);
    const diagram = page.locator('img[src$="request-life.svg"]');
    expect(await diagram.evaluate((image) => (image as unknown as { complete: boolean; naturalWidth: number }).naturalWidth)).toBeGreaterThan(0);
    expect(problems).toEqual([]);
  });
});
