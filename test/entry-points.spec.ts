import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
// `… from 'x'`, `import 'x'` and `import('x')`.
const IMPORT_SPECIFIER = /\bfrom\s*['"]([^'"]+)['"]|\bimport\s*\(?\s*['"]([^'"]+)['"]/g;

/** Every file reachable from `entry` through relative imports, and every package they import. */
function importGraph(entry: string): { files: string[]; packages: Set<string> } {
  const files: string[] = [];
  const packages = new Set<string>();
  const visit = (file: string): void => {
    if (files.includes(file)) return;
    files.push(file);
    for (const match of readFileSync(file, 'utf8').matchAll(IMPORT_SPECIFIER)) {
      const specifier = match[1] ?? match[2];
      if (specifier.startsWith('.')) visit(resolve(dirname(file), specifier.replace(/\.js$/, '.ts')));
      else packages.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]);
    }
  };
  visit(join(root, entry));
  return { files: files.map((file) => relative(root, file)), packages };
}

describe('entry points and optional peers', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
    exports: Record<string, { types: string; default: string }>;
    peerDependenciesMeta: Record<string, { optional?: boolean }>;
  };

  it('the main entry loads none of @nestjs/terminus, prom-client and @opentelemetry/api', () => {
    const { files, packages } = importGraph('lib/index.ts');
    expect(packages).not.toContain('@nestjs/terminus');
    expect(packages).not.toContain('prom-client');
    expect(packages).not.toContain('@opentelemetry/api');
    expect(files.filter((file) => /^lib\/(health|metrics|otel)\//.test(file))).toEqual([]);
  });

  it('the otel entry needs @opentelemetry/api alone of the optional peers', () => {
    const { packages } = importGraph('lib/otel/index.ts');
    expect(packages).toContain('@opentelemetry/api');
    expect(packages).not.toContain('prom-client');
    expect(packages).not.toContain('@nestjs/terminus');
  });

  it('the health entry needs @nestjs/terminus, not prom-client; the metrics entry the reverse', () => {
    expect(importGraph('lib/health/index.ts').packages).toContain('@nestjs/terminus');
    expect(importGraph('lib/health/index.ts').packages).not.toContain('prom-client');
    expect(importGraph('lib/metrics/index.ts').packages).toContain('prom-client');
    expect(importGraph('lib/metrics/index.ts').packages).not.toContain('@nestjs/terminus');
  });

  it('the drizzle entry alone loads drizzle-orm', () => {
    expect(importGraph('lib/drizzle/index.ts').packages).toContain('drizzle-orm');
    for (const entry of ['lib/index.ts', 'lib/health/index.ts', 'lib/metrics/index.ts', 'lib/otel/index.ts', 'lib/testing/index.ts', 'lib/kysely/index.ts']) {
      expect({ entry, packages: [...importGraph(entry).packages] }).toEqual({ entry, packages: expect.not.arrayContaining(['drizzle-orm']) });
    }
  });

  it('package.json maps the subpaths to the built entries and marks the peers optional', () => {
    expect(pkg.exports['./health']).toEqual({ types: './dist/health/index.d.ts', default: './dist/health/index.js' });
    expect(pkg.exports['./metrics']).toEqual({ types: './dist/metrics/index.d.ts', default: './dist/metrics/index.js' });
    expect(pkg.exports['./otel']).toEqual({ types: './dist/otel/index.d.ts', default: './dist/otel/index.js' });
    expect(pkg.exports['./drizzle']).toEqual({ types: './dist/drizzle/index.d.ts', default: './dist/drizzle/index.js' });
    expect(pkg.peerDependenciesMeta['@nestjs/terminus']).toEqual({ optional: true });
    expect(pkg.peerDependenciesMeta['prom-client']).toEqual({ optional: true });
    expect(pkg.peerDependenciesMeta['@opentelemetry/api']).toEqual({ optional: true });
    expect(pkg.peerDependenciesMeta['drizzle-orm']).toEqual({ optional: true });
  });

  it('only the kysely entry loads kysely, an optional peer', () => {
    expect(importGraph('lib/index.ts').packages).not.toContain('kysely');
    expect(importGraph('lib/kysely/index.ts').packages).toContain('kysely');
    expect(pkg.exports['./kysely']).toEqual({ types: './dist/kysely/index.d.ts', default: './dist/kysely/index.js' });
    expect(pkg.peerDependenciesMeta.kysely).toEqual({ optional: true });
  });
});
