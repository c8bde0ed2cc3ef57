#!/usr/bin/env node
// The package's import hygiene, checked on lib/ and on the packed package (run after `npm run build`):
//  1. no import cycle between the files of lib/, type-only imports and re-exports included;
//  2. no import of another package's private files: only its root entry, or a subpath its `exports`
//     map names one by one (wildcards such as Nest's `./*` or pg's `./lib/*` mirror the file tree and
//     promise nothing; a path with an `internal` segment is private whatever the map says). String
//     literals naming such a path count too (`createRequire(import.meta.url)('pg/lib/…')`), and an
//     imported package, types included (the declarations import it too), must be a dependency or peer;
//  3. in the tarball `npm pack` makes, no declaration file mentions `@internal` (stripInternal drops
//     those members) and the declarations type-check on their own, so a public type never refers to
//     a stripped one.
// Exits 1 listing every finding. Uses the TypeScript compiler the project builds with: no other tool.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const lib = join(root, 'lib');
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const declaredDependencies = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.peerDependencies ?? {})]);
const requireFromRoot = createRequire(join(root, 'package.json'));

// Tangled files can close many cycles: the first ones are enough to see which imports to cut.
const MAX_CYCLES_SHOWN = 20;

const failures = [];
const sources = listFiles(lib, (name) => name.endsWith('.ts') && !name.endsWith('.d.ts')).sort();
const graph = new Map(sources.map((file) => [file, new Set()]));

for (const file of sources) {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  for (const { specifier, node, isModuleSpecifier } of references(source)) {
    const where = `${relative(root, file)}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
    if (specifier.startsWith('.')) {
      const target = resolveRelative(file, specifier);
      if (target) graph.get(file).add(target);
      else failures.push(`${where}: '${specifier}' resolves to no file of lib/`);
      continue;
    }
    const problem = privatePathProblem(specifier, isModuleSpecifier);
    if (problem) failures.push(`${where}: '${specifier}' ${problem}`);
  }
}

for (const { files, cycles } of findCycles(graph)) {
  const shown = cycles.slice(0, MAX_CYCLES_SHOWN).map((cycle) => `\n      ${cycle.map((file) => relative(lib, file)).join(' -> ')}`);
  const more = cycles.length > MAX_CYCLES_SHOWN ? '\n      … and more' : '';
  failures.push(`import cycles among ${files.length} files of lib/:${shown.join('')}${more}`);
}

failures.push(...checkPackedDeclarations());

if (failures.length) {
  console.error(`check-imports: ${failures.length} problem(s)\n${failures.map((line) => `  ${line}`).join('\n')}`);
  process.exit(1);
}
console.log(`check-imports: ${sources.length} files of lib/, no cycle, public imports only; packed declarations clean`);

/** Every specifier-like string of a file: module specifiers, and string literals naming a package's file. */
function* references(source) {
  const specifiers = new Set();
  const visit = function* (node) {
    const literal = moduleSpecifierOf(node);
    if (literal) {
      specifiers.add(literal);
      yield { specifier: literal.text, node, isModuleSpecifier: true };
    } else if (ts.isStringLiteralLike(node) && !specifiers.has(node) && packageOf(node.text)) {
      // Any other string naming an installed package's path: require(), createRequire()(), a variable.
      yield { specifier: node.text, node, isModuleSpecifier: false };
    }
    for (const child of node.getChildren(source)) yield* visit(child);
  };
  yield* visit(source);
}

/**
 * The specifier literal of an import of any kind: `import` and `import type`,
 * `export … from`, `import x = require()`, `import()` and `import('…').T`.
 */
function moduleSpecifierOf(node) {
  if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
    return node.moduleSpecifier;
  }
  if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
    return node.moduleReference.expression;
  }
  if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
    return node.argument.literal;
  }
  if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
    return node.arguments[0];
  }
  return undefined;
}

/** The file of lib/ a relative specifier names (`./x.js` is `./x.ts`), if any. */
function resolveRelative(from, specifier) {
  const base = resolve(dirname(from), specifier);
  const candidates = [base.replace(/\.(m|c)?js$/, '.$1ts'), base, `${base}.ts`, join(base, 'index.ts')];
  return candidates.find((candidate) => graph.has(candidate));
}

/** `{ name, subpath }` of a bare specifier naming an installed package, else undefined. */
function packageOf(specifier) {
  const match = /^((?:@[a-z0-9][\w.~-]*\/)?[a-z0-9][\w.~-]*)(?:\/(.+))?$/i.exec(specifier);
  if (!match || isBuiltin(match[1])) return undefined;
  const manifestPath = packageManifest(match[1]);
  return manifestPath ? { name: match[1], subpath: match[2], manifestPath } : undefined;
}

function packageManifest(name) {
  const path = join(root, 'node_modules', name, 'package.json');
  if (existsSync(path)) return path;
  try {
    return requireFromRoot.resolve(`${name}/package.json`);
  } catch {
    return undefined;
  }
}

function isBuiltin(name) {
  return name.startsWith('node:') || builtinModules.includes(name);
}

/** Why importing `specifier` reaches past another package's public surface, or undefined if it does not. */
function privatePathProblem(specifier, imported) {
  if (isBuiltin(specifier.split('/')[0])) return undefined;
  const target = packageOf(specifier);
  if (!target) return 'is not an installed package';
  if (imported && !declaredDependencies.has(target.name)) return `imports ${target.name}, which is not a dependency or peer dependency`;
  if (target.subpath === undefined) return undefined;
  if (target.subpath.split('/').includes('internal')) return `is a private path of ${target.name} (internal)`;
  const { exports } = JSON.parse(readFileSync(target.manifestPath, 'utf8'));
  const declared = exports && typeof exports === 'object' && Object.hasOwn(exports, `./${target.subpath}`);
  return declared ? undefined : `is a private path of ${target.name}: not an entry its exports map names`;
}

/**
 * The files tied together by cycles (strongly connected components), each
 * with its first elementary cycles as chains of files back to the first.
 */
function findCycles(edges) {
  return stronglyConnected(edges)
    .filter((component) => component.length > 1 || edges.get(component[0]).has(component[0]))
    .map((files) => ({ files, cycles: elementaryCycles(files, edges, MAX_CYCLES_SHOWN + 1) }));
}

/** Tarjan's strongly connected components. */
function stronglyConnected(edges) {
  let counter = 0;
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const components = [];
  const connect = (node) => {
    index.set(node, counter);
    low.set(node, counter++);
    stack.push(node);
    onStack.add(node);
    for (const next of edges.get(node)) {
      if (!index.has(next)) {
        connect(next);
        low.set(node, Math.min(low.get(node), low.get(next)));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node), index.get(next)));
      }
    }
    if (low.get(node) !== index.get(node)) return;
    const component = [];
    let member;
    do {
      member = stack.pop();
      onStack.delete(member);
      component.push(member);
    } while (member !== node);
    components.push(component.sort());
  };
  for (const node of edges.keys()) if (!index.has(node)) connect(node);
  return components;
}

/**
 * Up to `limit` cycles through the files of one component, each found once:
 * from each file, the simple paths back to it through files later in the
 * sorted order (their number can grow exponentially, hence the limit).
 */
function elementaryCycles(component, edges, limit) {
  const cycles = [];
  const order = new Map(component.map((file, i) => [file, i]));
  const walk = (start, node, path) => {
    for (const next of edges.get(node)) {
      if (cycles.length >= limit) return;
      if (next === start) cycles.push([...path, start]);
      else if (order.get(next) > order.get(start) && !path.includes(next)) walk(start, next, [...path, next]);
    }
  };
  for (const start of component) walk(start, start, [start]);
  return cycles;
}

/** Packs the package as npm publishes it and checks its declaration files. */
function checkPackedDeclarations() {
  if (!existsSync(join(root, 'dist'))) return ['dist/ is missing: run `npm run build` first'];
  // Inside node_modules, so that the declarations resolve their imports (Nest, pg, …) as a consumer's would.
  const cache = join(root, 'node_modules', '.cache');
  mkdirSync(cache, { recursive: true });
  const work = mkdtempSync(join(cache, 'check-imports-'));
  try {
    const [{ filename }] = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }));
    execFileSync('tar', ['-xzf', join(work, filename), '-C', work]);
    const declarations = listFiles(join(work, 'package'), (name) => name.endsWith('.d.ts'));
    const problems = [];
    for (const file of declarations) {
      readFileSync(file, 'utf8').split('\n').forEach((line, i) => {
        if (line.includes('@internal')) problems.push(`packed ${relative(work, file)}:${i + 1} mentions @internal: ${line.trim()}`);
      });
    }
    writeFileSync(
      join(work, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
        include: ['package/**/*.d.ts'],
      }),
    );
    try {
      execFileSync(process.execPath, [requireFromRoot.resolve('typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: work, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (error) {
      const output = `${error.stdout ?? ''}${error.stderr ?? ''}`.trim().split('\n');
      problems.push(...ownDiagnostics(output).map((line) => `packed declarations do not type-check: ${line}`));
    }
    return problems;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The lines of tsc's output about the package's own declarations: a peer's
 * (drizzle-orm's declarations do not all pass with skipLibCheck off) are not
 * the package's to fix. A diagnostic's indented lines go with its first.
 */
function ownDiagnostics(lines) {
  let own = true;
  return lines.filter((line) => {
    const file = /^(\S[^(]*)\(\d+,\d+\): error /.exec(line)?.[1];
    if (file !== undefined) own = file.startsWith('package/');
    else if (!/^\s/.test(line)) own = true;
    return own;
  });
}

function listFiles(dir, keep) {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && keep(entry.name))
    .map((entry) => join(entry.parentPath, entry.name));
}
