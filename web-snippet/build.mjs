// Bundles the browser code switchboard serves, each into minified files
// with no source map and no paths or dates in them (the same sources and
// esbuild version give the same bytes), reports their gzipped sizes, and
// fails above each budget:
//
// - the widget a site embeds: src/main.js → dist/widget.js (30 KB gzipped:
//   it loads on every page of the site);
// - the agent console: console/src/main.js → dist/console.js and
//   dist/console.css.
//
// switchboard embeds dist/, so the built files are committed.
// `node build.mjs --check` builds without writing and fails when a file in
// dist/ is not byte for byte what the sources give (scripts/test runs it).

import { build } from 'esbuild';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const check = process.argv.includes('--check');
const { version } = JSON.parse(readFileSync(join(here, 'node_modules', 'esbuild', 'package.json'), 'utf8'));

const BUNDLES = [
  { entry: 'src/main.js', out: 'widget', title: 'web snippet', budget: 30 * 1024 },
  { entry: 'console/src/main.js', out: 'console', title: 'agent console', budget: 60 * 1024 },
];

const kb = (n) => `${(n / 1024).toFixed(1)} KB`;
let failed = false;

for (const bundle of BUNDLES) {
  const result = await build({
    absWorkingDir: here,
    entryPoints: { [bundle.out]: bundle.entry },
    outdir: 'dist',
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
  let total = 0;
  for (const file of result.outputFiles) {
    const name = basename(file.path);
    const banner = `/* switchboard ${bundle.title} (built by esbuild ${version}) */\n`;
    const bytes = Buffer.concat([Buffer.from(banner), Buffer.from(file.contents)]);
    const out = join(here, 'dist', name);
    if (check) {
      if (!existsSync(out) || !readFileSync(out).equals(bytes)) {
        console.error(`web-snippet/dist/${name} is not what its sources build to: run \`npm run build --prefix web-snippet\` and commit dist/`);
        failed = true;
      }
    } else {
      mkdirSync(dirname(out), { recursive: true });
      writeFileSync(out, bytes);
    }
    const gzipped = gzipSync(bytes, { level: 9 }).length;
    total += gzipped;
    console.log(`dist/${name}: ${kb(bytes.length)}, ${kb(gzipped)} gzipped${check ? ', checked' : ''}`);
  }
  if (total > bundle.budget) {
    console.error(`the ${bundle.title} is ${kb(total)} gzipped, over its budget of ${kb(bundle.budget)}`);
    failed = true;
  }
}

if (failed) process.exit(1);
