import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { config } from './config.js';
import { chartSvg, evaluateTargets, markdown, subtitleOf, type BenchResults } from './report.js';

/** Re-renders latest.md and chart.svg from latest.json (after a change to the report, without re-running). */
const dir = config.resultsDir;
const results = JSON.parse(readFileSync(join(dir, 'latest.json'), 'utf8')) as BenchResults;
results.targets = evaluateTargets(results.compare, results.soak);
writeFileSync(join(dir, 'latest.json'), `${JSON.stringify(results, null, 2)}\n`);
writeFileSync(join(dir, 'latest.md'), `${markdown(results)}\n`);
if (results.compare) writeFileSync(join(dir, 'chart.svg'), chartSvg(results.compare, subtitleOf(results)));
console.log(markdown(results));
