import { readFileSync } from 'node:fs';
import { headlineSentence, readHeadline } from '../bench/headline.js';

const read = (path: string): string => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8').replace(/\s+/g, ' ');

describe('performance figures in the docs', () => {
  const headline = readHeadline(new URL('..', import.meta.url).pathname);

  it.each(['README.md', 'docs/performance.md'])('%s states the headline as the committed runs give it (bench/results/headline)', (page) => {
    const text = read(page);
    expect(text).toContain(headlineSentence(headline));
    // Its machine and date with it.
    expect(text).toContain(headline.machine);
    expect(text).toContain(headline.date);
  });

  it('the performance page shows every row of the runs as headline.md has it', () => {
    const page = readFileSync(new URL('../docs/performance.md', import.meta.url), 'utf8');
    const table = readFileSync(new URL('../bench/results/headline/headline.md', import.meta.url), 'utf8').split('\n\n')[0];
    expect(page).toContain(table);
  });
});
