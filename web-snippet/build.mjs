// Bundles src/main.js into dist/widget.js (one minified file, no source map,
// no paths or dates in it: the same sources and esbuild version give the
// same bytes), reports its gzipped size, and fails above the budget.
//
// switchboard embeds dist/widget.js, so the built file is committed.
// `node build.mjs --check` builds without writing and fails when
// dist/widget.js is not byte for byte what the sources give (scripts/test
// runs it).

import { build } from 'esbuild';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const BUDGET_GZIP_BYTES = 30 * 1024;
const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, 'dist', 'widget.js');
const check = process.argv.includes('--check');

const result = await build({
  absWorkingDir: here,
  entryPoints: ['src/main.js'],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020', 'chrome90', 'firefox90', 'safari15'],
  charset: 'utf8',
  legalComments: 'none',
  sourcemap: false,
  write: false,
  logLevel: 'warning',
});
const { version } = JSON.parse(readFileSync(join(here, 'node_modules', 'esbuild', 'package.json'), 'utf8'));
const banner = `/* switchboard web snippet (built by esbuild ${version}) */\n`;
const bytes = Buffer.concat([Buffer.from(banner), Buffer.from(result.outputFiles[0].contents)]);
if (check) {
  if (!existsSync(out) || !readFileSync(out).equals(bytes)) {
    console.error('web-snippet/dist/widget.js is not what web-snippet/src builds to: run `npm run build --prefix web-snippet` and commit dist/widget.js');
    process.exit(1);
  }
} else {
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, bytes);
}

const gzipped = gzipSync(bytes, { level: 9 }).length;
const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
console.log(`dist/widget.js: ${kb(bytes.length)}, ${kb(gzipped)} gzipped (budget ${kb(BUDGET_GZIP_BYTES)})${check ? ', up to date' : ''}`);
if (gzipped > BUDGET_GZIP_BYTES) {
  console.error(`dist/widget.js is over its budget of ${kb(BUDGET_GZIP_BYTES)} gzipped`);
  process.exit(1);
}
