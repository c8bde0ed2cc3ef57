import { readdirSync, readFileSync } from 'node:fs';
import * as main from 'nestjs-pg-pool';
import * as health from 'nestjs-pg-pool/health';
import * as metrics from 'nestjs-pg-pool/metrics';
import * as otel from 'nestjs-pg-pool/otel';
import * as testing from 'nestjs-pg-pool/testing';
import ts from 'typescript';

// What docs/troubleshooting.md and docs/reliability.md say of the module's errors and log lines,
// checked against the package itself: each error it names is exported and answered with the
// status the page states; each message or log line it quotes is made of the strings lib/ writes.

const root = new URL('../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');
const exported: Record<string, unknown> = { ...main, ...health, ...metrics, ...otel, ...testing };

describe('the errors of docs/troubleshooting.md', () => {
  const page = read('docs/troubleshooting.md');
  const sections = [...page.matchAll(/^### (.*)\n([\s\S]*?)(?=^##)/gm)].flatMap(([, heading, body]) =>
    [...heading.matchAll(/`(\w+Error)`/g)].map(([, name]) => ({ name, body })),
  );
  const names = [...new Set(sections.map(({ name }) => name))];

  // Constructor arguments for the classes whose constructor reads more than strings.
  const probeArguments: Record<string, unknown[]> = {
    DatasourceNotFoundError: ['default', []],
    TransactionalDatasourceNotFoundError: ['default', [], 'Service.method'],
    NoMatchingHostError: ['default', 'read-write', []],
    RequestSettingsFailedError: ['default', { cause: new Error('role "x" does not exist') }],
  };
  /** The status Nest's default filter answers an error of that class with: its statusCode, else 500. */
  const answeredWith = (name: string): number => {
    const error = Reflect.construct(exported[name] as new (...args: unknown[]) => unknown, probeArguments[name] ?? ['default', 'x', 'y', undefined, 1]);
    return (error as { statusCode?: number }).statusCode ?? 500;
  };

  it('documents the errors lib/ exports', () => {
    expect(names.length).toBeGreaterThanOrEqual(25);
    expect(names.filter((name) => typeof exported[name] !== 'function')).toEqual([]);
  });

  it('names only errors that extend PoolError, as its first paragraph says', () => {
    expect(names.filter((name) => !((exported[name] as { prototype: unknown }).prototype instanceof main.PoolError))).toEqual([]);
  });

  it("answers each with the status of the page's table, 500 for every other", () => {
    const rows = [...page.matchAll(/^\| (.*?) \| `?(\d{3})\b.*\|$/gm)].flatMap(([, errors, status]) =>
      [...errors.matchAll(/`(\w+Error)`/g)].map(([, name]) => ({ name, status: Number(status) })),
    );
    expect(rows.length).toBeGreaterThanOrEqual(9);
    expect(page).toMatch(/^\| every other error \| `500` \|/m);
    const expected = names.map((name) => ({ name, status: rows.find((row) => row.name === name)?.status ?? 500 }));
    expect(names.map((name) => ({ name, status: answeredWith(name) }))).toEqual(expected);
  });

  it('answers each with the status its section states', () => {
    const stated = sections.flatMap(({ name, body }) => [...body.matchAll(/answered (\d{3})\b/gi)].map(([, status]) => ({ name, status: Number(status) })));
    expect(stated.length).toBeGreaterThanOrEqual(5);
    expect(stated.map(({ name }) => ({ name, status: answeredWith(name) }))).toEqual(stated);
  });
});

/**
 * Every string lib/ can write, as the literal pieces around its placeholders: a template's `${…}`,
 * an operand of `+` that is no literal. Adjacent literals of one `+` chain make one piece.
 */
function libStrings(): string[] {
  const pieces: string[] = [];
  const files = readdirSync(new URL('lib/', root), { recursive: true, encoding: 'utf8' }).filter((name) => name.endsWith('.ts'));
  for (const name of files) {
    const source = ts.createSourceFile(name, read(`lib/${name}`), ts.ScriptTarget.Latest, true);
    const visit = (node: ts.Node): void => {
      pieces.push(...literalPieces(node));
      ts.forEachChild(node, visit);
    };
    visit(source);
  }
  return pieces.filter((piece) => piece.length > 0);
}

/** The literal text of a string expression split at its placeholders ([] for any other node). */
function literalPieces(node: ts.Node): string[] {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return [node.text];
  if (ts.isTemplateExpression(node)) return [node.head.text, ...node.templateSpans.map((span) => span.literal.text)];
  if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) {
    const [left, right] = [operandPieces(node.left), operandPieces(node.right)];
    return [...left.slice(0, -1), left.at(-1)! + right[0], ...right.slice(1)];
  }
  return [];
}

/** An operand of `+`: its pieces, or a placeholder (two empty pieces) for a non-literal. */
function operandPieces(node: ts.Expression): string[] {
  const inner = ts.isParenthesizedExpression(node) ? node.expression : node;
  const pieces = literalPieces(inner);
  return pieces.length ? pieces : ['', ''];
}

/**
 * The fixed runs of words of a quoted line: split where the page elides (`…`, `N`, `M`, `<call site>`)
 * and at the values a message fills in (numbers, names in quotes, paths, hosts, `Class.method`,
 * codes in capitals), runs of fewer than three words left out.
 */
function fixedRuns(line: string): string[] {
  const value = /^(?:…|[NM]|.*[\d/@"'].*|.*\w\.\w.*|[A-Z]{2,})$/;
  const runs: string[][] = [[]];
  for (const token of line.replace(/<[^>]*>/g, '…').split(/\s+/)) {
    if (token.includes('…') || value.test(token.replace(/^[([{]+|[)\]}:;,.?!]+$/g, ''))) runs.push([]);
    else runs.at(-1)!.push(token);
  }
  return runs.map((words) => words.join(' ')).filter((run) => words(run).length >= 3);
}

/** Words without punctuation: a quote and the strings it is made of compare on these. */
const words = (text: string) => text.replace(/[^\w\s]/g, ' ').split(/\s+/).filter(Boolean);

/**
 * Whether `run` is made of `pieces` (each a string's words between two placeholders) as a message
 * is: stretches of the run found in pieces, one after the other, where one ends a piece and the
 * next begins one: a placeholder between them, filled by nothing the page shows (a log line ending
 * with the message of the error it reports) or by one word (`unreachable` in `is ${kind} at
 * startup`). The run's first stretch may begin inside a piece and its last end inside one, as the
 * page cuts a quote there; inside the run, stretches are of two words at least.
 */
function madeOf(run: string, pieces: string[][]): boolean {
  const runWords = words(run);
  const n = runWords.length;
  /** For the stretch [from, to): whether some piece holds it at its start, at its end, both, anywhere. */
  const holders = (from: number, to: number) => {
    const stretch = runWords.slice(from, to);
    return pieces.flatMap((piece) => {
      const found: { starts: boolean; ends: boolean }[] = [];
      for (let at = piece.indexOf(stretch[0]); at >= 0 && at + stretch.length <= piece.length; at = piece.indexOf(stretch[0], at + 1)) {
        if (stretch.every((word, k) => piece[at + k] === word)) found.push({ starts: at === 0, ends: at + stretch.length === piece.length });
      }
      return found;
    });
  };
  // reached[i]: the ways the run's first i words can be covered, by whether the last stretch ended a piece.
  const reached: { endedPiece: boolean; afterValue: boolean }[][] = Array.from({ length: n + 1 }, () => []);
  reached[0].push({ endedPiece: true, afterValue: false });
  for (let from = 0; from < n; from++) {
    for (const state of reached[from]) {
      // One word standing for a placeholder's value, between the end of a piece and the start of another.
      if (state.endedPiece && !state.afterValue) reached[from + 1].push({ endedPiece: false, afterValue: true });
      for (let to = from + 1; to <= n; to++) {
        if (to - from < 2 && from > 0 && to < n) continue;
        const joins = from === 0 ? holders(from, to) : holders(from, to).filter(({ starts }) => starts && (state.endedPiece || state.afterValue));
        for (const { ends } of joins) reached[to].push({ endedPiece: ends, afterValue: false });
      }
    }
    // The ways to a position matter only by their two flags.
    reached[from + 1] = [...new Map(reached[from + 1].map((state) => [`${state.endedPiece}${state.afterValue}`, state])).values()];
  }
  return reached[n].length > 0;
}

describe('messages and log lines quoted in the docs', () => {
  // What node-postgres and PostgreSQL say, quoted alone or inside a message of the module.
  const foreign = ['terminating connection due to administrator command', 'password authentication failed for user'];
  const pages = readdirSync(new URL('docs/', root)).filter((name) => name.endsWith('.md'));
  const quotes = pages.flatMap((name) => {
    const page = `docs/${name}`;
    const text = read(page).replace(/```(?:ts|typescript|sh|bash|sql)\n[\s\S]*?```/g, '');
    // Log lines in plain blocks, on every page.
    const logged = [...text.matchAll(/```\n([\s\S]*?)```/g)].flatMap(([, block]) =>
      block.split('\n').map((line) => line.trim()).filter((line) => /^(?:(?:ERROR|WARN|LOG|DEBUG) \[PoolModule\] )?Datasource "/.test(line)),
    );
    // Messages quoted in the text of the two pages that explain them: five words or more, not code.
    const inline = ['troubleshooting.md', 'reliability.md'].includes(name)
      ? [...text.replace(/```[\s\S]*?```/g, '').matchAll(/`([^`\n]+)`/g)]
          .map(([, code]) => code)
          .filter((code) => code.split(' ').length >= 5 && !/^(?:SELECT|SET|RESET)\b|^\w+\(|\w\.\w+\(|[{}]|=>/.test(code))
      : [];
    return [...logged, ...inline]
      .map((quote) => ({ page, quote: foreign.reduce((line, phrase) => line.replaceAll(phrase, '…'), quote) }))
      .filter(({ quote }) => quote !== '…');
  });
  const strings = libStrings();
  const pieces = strings.map(words);

  it('finds the quotes and the strings of lib/', () => {
    expect(quotes.length).toBeGreaterThanOrEqual(20);
    expect(strings.length).toBeGreaterThan(500);
  });

  it('quotes only what lib/ writes: each run of fixed words of a quote is made of its strings', () => {
    const missing = quotes.flatMap(({ page, quote }) =>
      fixedRuns(quote)
        .filter((run) => !madeOf(run, pieces))
        .map((run) => ({ page, quote, run })),
    );
    expect(missing).toEqual([]);
  });

  it('finds words to check in every quote', () => {
    expect(quotes.filter(({ quote }) => fixedRuns(quote).length === 0)).toEqual([]);
  });
});

describe('the tests the docs name', () => {
  // "Tested in test/x.spec.ts" is a claim too: the file (or, with `*`, one file at least) must be there.
  const files = readdirSync(new URL('test/', root), { recursive: true, encoding: 'utf8' }).map((name) => `test/${name}`);
  const named = ['README.md', ...readdirSync(new URL('docs/', root)).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)].flatMap(
    (page) => [...read(page).matchAll(/`(test\/[^`\s]*)`/g)].map(([, path]) => ({ page, path: path.replace(/#.*$/, '').replace(/\/$/, '') })),
  );

  it('are in the repository', () => {
    expect(named.length).toBeGreaterThanOrEqual(10);
    const glob = (path: string) => new RegExp(`^${path.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*')}$`);
    expect(named.filter(({ path }) => !files.some((file) => glob(path).test(file)))).toEqual([]);
  });
});
