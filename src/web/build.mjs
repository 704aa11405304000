// Builds the browser bundles that the server embeds: app/main.js and everything it imports
// (the app's modules, room_stream.js, the pinned socket.io-client) into dist/app.js, the
// operator view (operator/main.js, served at /admin) into dist/operator.js, and the licence
// texts of every third-party package in them into dist/licenses.txt.
//
//   node build.mjs           write dist/
//   node build.mjs --check   build in memory; exit 1 when dist/ differs from that by a byte,
//                            or when the installed socket.io-client is not the pinned one
//
// The output depends only on the sources, the lockfile's packages and this file: paths in it
// are relative to this folder, and nothing of the machine (time, absolute paths) goes in.
// Run through scripts/build-web, which installs the lockfile's packages first.
import { readFile, readdir, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DIST = path.join(HERE, 'dist');
const check = process.argv.includes('--check');

const readJson = async (file) => JSON.parse(await readFile(path.join(HERE, file), 'utf8'));

function fail(message) {
  console.error(`build-web: ${message}`);
  process.exit(1);
}

const pkg = await readJson('package.json');
const pinned = pkg.dependencies['socket.io-client'];
const installed = (await readJson('node_modules/socket.io-client/package.json')).version;
if (!/^\d+\.\d+\.\d+$/.test(pinned)) fail(`socket.io-client must be pinned to one version in package.json, found "${pinned}"`);
if (installed !== pinned) fail(`socket.io-client ${installed} is installed but package.json pins ${pinned}: run scripts/build-web`);

const result = await esbuild.build({
  absWorkingDir: HERE,
  entryPoints: { app: 'app/main.js', operator: 'operator/main.js' },
  outdir: 'dist',
  bundle: true,
  format: 'esm',
  platform: 'browser',
  // Browsers of the last years run the sources as they are (private fields, `??`, `at()`).
  target: 'es2022',
  charset: 'utf8',
  // Whitespace and syntax only: names stay as written, so stack traces and the browser's
  // pretty-printer still read like the sources, at about half the unminified size.
  minifyWhitespace: true,
  minifySyntax: true,
  legalComments: 'eof',
  write: false,
  metafile: true,
  logLevel: 'warning',
  banner: {
    js: `// roomcast browser bundle, with socket.io-client ${installed}. Built by scripts/build-web from\n`
      + '// src/web/app/ and src/web/operator/ (esbuild ' + esbuild.version + '); do not edit: change the sources and rebuild.\n'
      + '// Third-party licences: /assets/licenses.txt',
  },
});
if (result.errors.length) fail('esbuild failed');

/** The package a bundled file belongs to: `node_modules/<name>/…` or `node_modules/@scope/<name>/…`. */
function packageDir(input) {
  const parts = input.split('/');
  const at = parts.lastIndexOf('node_modules');
  if (at < 0) return null;
  const take = parts[at + 1].startsWith('@') ? 2 : 1;
  return parts.slice(0, at + 1 + take).join('/');
}

async function licenceOf(dir) {
  const files = await readdir(path.join(HERE, dir));
  const name = files.find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
  if (!name) fail(`${dir} has no licence file: its terms must be checked before it ships in the bundle`);
  return (await readFile(path.join(HERE, dir, name), 'utf8')).trim();
}

const dirs = [...new Set(Object.keys(result.metafile.inputs).map(packageDir).filter(Boolean))].sort();
const sections = [];
for (const dir of dirs) {
  const meta = await readJson(path.join(dir, 'package.json'));
  sections.push(`${'='.repeat(78)}\n${meta.name} ${meta.version} (${meta.license})\n${'='.repeat(78)}\n\n${await licenceOf(dir)}\n`);
}
const licences = 'Third-party software in the roomcast browser bundles (src/web/dist/app.js and operator.js),\n'
  + 'with the licence text of each package.\n\n' + sections.join('\n');

const bundle = (name) => {
  const file = result.outputFiles.find((f) => path.basename(f.path) === name);
  if (!file) fail(`esbuild wrote no ${name}`);
  return Buffer.from(file.contents);
};
const outputs = new Map([
  ['app.js', bundle('app.js')],
  ['operator.js', bundle('operator.js')],
  ['licenses.txt', Buffer.from(licences)],
]);

if (!check) {
  await mkdir(DIST, { recursive: true });
  for (const [name, bytes] of outputs) await writeFile(path.join(DIST, name), bytes);
  console.log(`build-web: dist/app.js (${outputs.get('app.js').length} bytes), dist/operator.js (${outputs.get('operator.js').length} bytes), socket.io-client ${installed}, ${dirs.length} packages, dist/licenses.txt`);
  process.exit(0);
}

const stale = [];
for (const [name, bytes] of outputs) {
  let committed;
  try {
    committed = await readFile(path.join(DIST, name));
  } catch {
    stale.push(`src/web/dist/${name} is missing`);
    continue;
  }
  if (committed.equals(bytes)) continue;
  let at = 0;
  while (at < committed.length && at < bytes.length && committed[at] === bytes[at]) at += 1;
  const line = committed.subarray(0, at).toString('utf8').split('\n').length;
  const around = (buf) => JSON.stringify(buf.subarray(Math.max(0, at - 40), at + 60).toString('utf8'));
  stale.push(`src/web/dist/${name} differs from a fresh build at byte ${at} (line ${line}):\n`
    + `  committed: ${around(committed)}\n  built:     ${around(bytes)}`);
}
if (stale.length) fail(`the embedded bundle does not match its sources; run scripts/build-web and commit src/web/dist/\n${stale.join('\n')}`);
console.log(`build-web: src/web/dist/ matches a fresh build (socket.io-client ${installed})`);
