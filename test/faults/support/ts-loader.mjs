// Lets the fault suite run its application in a child process of its own,
// straight from the TypeScript sources: `node --import <this file> app.ts`.
// Compiles .ts with @swc/core (the settings jest uses) and
// resolves the `.js` specifiers of the sources to their `.ts` files.
import { transformSync } from '@swc/core';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { register } from 'node:module';
import { fileURLToPath } from 'node:url';
import { SWC_OPTIONS } from '../../support/swc-options.js';

export async function resolve(specifier, context, nextResolve) {
  if (specifier.endsWith('.js') && (specifier.startsWith('.') || specifier.startsWith('file:')) && context.parentURL) {
    const asTs = new URL(specifier.replace(/\.js$/, '.ts'), context.parentURL);
    if (existsSync(fileURLToPath(asTs))) return { url: asTs.href, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}

export async function load(url, context, nextLoad) {
  if (!url.endsWith('.ts')) return nextLoad(url, context);
  const filename = fileURLToPath(url);
  const { code } = transformSync(await readFile(filename, 'utf8'), { ...SWC_OPTIONS, filename });
  return { format: 'module', source: code, shortCircuit: true };
}

// Imported with --import: registers this very file as the loader.
if (!import.meta.url.includes('?hooks')) register(`${import.meta.url}?hooks`);
