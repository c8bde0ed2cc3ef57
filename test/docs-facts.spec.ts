import { readdirSync, readFileSync } from 'node:fs';
import { CONNECTION_BUDGET_QUERY } from '../lib/datasource/datasource.js';

// Facts the docs state once (supported versions, what CI runs, the startup check, the benchmark
// machine), checked against the files they come from, so that a change to one fails here until
// the page says it too.

const root = new URL('../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const packageJson = JSON.parse(read('package.json')) as { engines: { node: string }; peerDependencies: Record<string, string> };
const lock = JSON.parse(read('package-lock.json')) as { packages: Record<string, { version: string }> };
const ciRun = read('.ci/run');
const pages = ['README.md', ...readdirSync(new URL('docs/', root)).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)];

/** The text of a page's `## heading` section, up to the next heading of that level. */
function section(page: string, heading: string): string {
  const text = read(page);
  const start = text.indexOf(`\n## ${heading}\n`);
  if (start < 0) throw new Error(`${page} has no section "${heading}"`);
  const end = text.indexOf('\n## ', start + 1);
  return text.slice(start, end < 0 ? undefined : end);
}

/** The rows of each Markdown table of `text`, as trimmed cells, header and separator left out. */
function tables(text: string): string[][][] {
  return text
    .split(/\n(?!\|)/)
    .map((block) => block.split('\n').filter((line) => line.startsWith('|')))
    .filter((lines) => lines.length > 2)
    .map((lines) => lines.slice(2).map((line) => line.slice(1, -1).split('|').map((cell) => cell.trim())));
}

const numbers = (cell: string) => (cell.match(/\d+/g) ?? []).map(Number);
const backticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map(([, code]) => code);

/** The default `.ci/run` gives a CI_ variable (`${CI_NODE_LINES-22 24 26}`, `${CI_PG_NODE:-24}`). */
function ciDefault(name: string): number[] {
  const found = new RegExp(`\\$\\{${name}:?-([^}]*)\\}`).exec(ciRun);
  if (!found) throw new Error(`.ci/run has no default for ${name}`);
  return numbers(found[1]);
}

describe('Supported versions (docs/getting-started.md)', () => {
  const [versions, ciLines] = tables(section('docs/getting-started.md', 'Supported versions'));
  const row = (table: string[][], label: RegExp) => {
    const found = table.find(([first]) => label.test(first));
    if (!found) throw new Error(`no row ${label}`);
    return found;
  };

  it('gives the engines range of package.json, its floor as the oldest tested and the newest Node line of CI', () => {
    const [, range, oldest, newest] = row(versions, /^Node\.js$/);
    expect(backticked(range)).toEqual([packageJson.engines.node]);
    expect(Number(oldest)).toBe(numbers(packageJson.engines.node)[0]);
    expect(Number(oldest)).toBe(Math.min(...ciDefault('CI_NODE_LINES')));
    expect(Number(newest)).toBe(Math.max(...ciDefault('CI_NODE_LINES')));
  });

  it('gives every peer range of package.json, its floor and the version package-lock.json installs', () => {
    const rows = versions.filter(([first]) => first.startsWith('`'));
    const named = rows.flatMap(([first, range, oldest, newest]) =>
      backticked(first).map((name) => ({ name, range: backticked(range)[0], oldest, newest })),
    );
    const expected = Object.entries(packageJson.peerDependencies).map(([name, range]) => ({
      name,
      range,
      oldest: range.replace(/^\^/, ''),
      newest: lock.packages[`node_modules/${name}`].version,
    }));
    expect(named.sort((a, b) => a.name.localeCompare(b.name))).toEqual(expected.sort((a, b) => a.name.localeCompare(b.name)));
  });

  it('gives the PostgreSQL majors of CI as the oldest and newest tested', () => {
    const [, , oldest, newest] = row(versions, /^PostgreSQL$/);
    expect([Number(oldest), Number(newest)]).toEqual([Math.min(...ciDefault('CI_PG_MAJORS')), Math.max(...ciDefault('CI_PG_MAJORS'))]);
  });

  it("lists CI's lines as .ci/run runs them", () => {
    const [, nodeLines] = row(ciLines, /`CI_NODE_LINES`/);
    expect(numbers(nodeLines)).toEqual(ciDefault('CI_NODE_LINES'));
    const [, pgNode, pgMajors, pgAuth] = row(ciLines, /`CI_PG_MAJORS`/);
    expect(numbers(pgNode)).toEqual(ciDefault('CI_PG_NODE'));
    expect(numbers(pgMajors)).toEqual(ciDefault('CI_PG_MAJORS'));
    expect(pgAuth).toBe('`scram-sha-256`');
    expect(ciRun).toMatch(/embedded server of each major, with a password checked by scram-sha-256/);
    const [, oldestNode, , , oldestPeers] = row(ciLines, /`CI_OLDEST_NODE`/);
    expect(numbers(oldestNode)).toEqual(ciDefault('CI_OLDEST_NODE'));
    expect(oldestPeers).toContain('`.ci/oldest-peers.sh`');
    expect(ciRun).toMatch(/run_line oldest .* bash \.ci\/oldest-peers\.sh/);
    expect(ciRun).toMatch(/run_line host '' /);
    row(ciLines, /^the machine's$/);
    // A new CI_ variable with a default is a new line (or a new choice) the table must show.
    const variables = new Set([...ciRun.matchAll(/\$\{(CI_[A-Z_]+):?-/g)].map(([, name]) => name));
    expect([...variables].filter((name) => !ciLines.some(([first]) => first.includes(`\`${name}\``)))).toEqual([]);
  });

  it('is the only page that states them: the others link to it', () => {
    // A version beside "CI", "supported" or "tested" in one sentence; a benchmark's "Node 24" is no such claim.
    const version = String.raw`(?:Node(?:\.js)? \d\d|PostgreSQL 1\d|NestJS \d|PgBouncer 1\.)\b`;
    const claim = String.raw`(?:\bCI\b|supported|tested)`;
    // Or a peer's version: "`kysely` (0.29 or later", "pg 8.21".
    const peer = Object.keys(packageJson.peerDependencies).map((name) => name.replace(/[/.]/g, '\\$&')).join('|');
    const restated = new RegExp(`${claim}[^.]*${version}|${version}[^.]*${claim}|(?:${peer})\`? \\(?[\\^~>=]*\\d+\\.\\d+`, 'i');
    const offenders = pages
      .filter((page) => page !== 'docs/getting-started.md')
      .flatMap((page) => read(page).split('\n').filter((line) => restated.test(line)).map((line) => `${page}: ${line}`));
    expect(offenders).toEqual([]);
  });
});

describe('the startup check (docs/reliability.md)', () => {
  it('shows the query the datasource runs', () => {
    const sql = /```sql\n([\s\S]*?)\n```/.exec(section('docs/reliability.md', 'The startup check'))?.[1];
    expect(sql).toBe(CONNECTION_BUDGET_QUERY);
  });

  it('is described only there: other pages link to it and none says it runs SELECT 1', () => {
    const offenders = pages.flatMap((page) =>
      read(page)
        .split('\n')
        .filter((line) => /startup check[^\]]*`SELECT 1`|`SELECT 1` check|(?:startup|bootstrap)[^.]*runs `SELECT 1`/i.test(line))
        .map((line) => `${page}: ${line}`),
    );
    expect(offenders).toEqual([]);
  });
});

describe('the benchmark machine', () => {
  // Every results file records the machine it ran on; a page may name only a CPU one of them records.
  const resultsDir = new URL('bench/results/', root);
  const results = readdirSync(resultsDir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('latest.json'))
    .map((name) => ({ dir: name.replace(/\/?latest\.json$/, ''), cpu: (JSON.parse(read(`bench/results/${name}`)) as { machine?: { cpuModel?: string } }).machine?.cpuModel }))
    .filter((result): result is { dir: string; cpu: string } => result.cpu !== undefined);
  const cpuNames = /\b(?:EPYC|Xeon|Ryzen|Threadripper|Core i[3579]|Graviton|Ampere|Apple M\d)\b/g;
  const paragraphs = pages.flatMap((page) => read(page).split(/\n\s*\n/).map((text) => ({ page, text })));

  it('reads a CPU model from the results files', () => {
    expect(results.length).toBeGreaterThan(5);
  });

  it('names no CPU that no results file records', () => {
    const recorded = results.map(({ cpu }) => cpu);
    const named = paragraphs.flatMap(({ page, text }) => [...text.matchAll(cpuNames)].map(([cpu]) => ({ page, cpu })));
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter(({ cpu }) => !recorded.some((model) => model.includes(cpu)))).toEqual([]);
  });

  it('names, beside a results directory, a CPU its files record', () => {
    const wrong = paragraphs.flatMap(({ page, text }) => {
      const cpus = [...new Set([...text.matchAll(cpuNames)].map(([cpu]) => cpu))];
      if (cpus.length === 0) return [];
      // `bench/results/client-hold/<name>/` stands for every directory under client-hold.
      const dirs = [...text.matchAll(/bench\/results\/([\w./-]*?)\/?(?:<[^>]*>\/?)?`/g)].map(([, dir]) => dir);
      return dirs.flatMap((dir) =>
        results
          .filter((result) => result.dir === dir || result.dir.startsWith(`${dir}/`))
          .filter(({ cpu }) => !cpus.some((name) => cpu.includes(name)))
          .map(({ dir: recordedIn, cpu }) => `${page}: names ${cpus.join(', ')} beside bench/results/${dir}, whose ${recordedIn} ran on ${cpu}`),
      );
    });
    expect(wrong).toEqual([]);
  });

  it('names every CPU the results files record on the performance page', () => {
    const page = read('docs/performance.md');
    const models = [...new Set(results.map(({ cpu }) => cpu))];
    expect(models.filter((model) => ![...model.matchAll(cpuNames)].some(([cpu]) => page.includes(cpu)))).toEqual([]);
  });
});
