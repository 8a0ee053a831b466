#!/usr/bin/env node
// The contract's compatibility check. Each released version of the proto is kept as a buf image
// in releases/proto/vX.Y.Z.binpb; `buf breaking` (rules in buf.yaml) compares proto/ against the
// newest one, so a change that would break deployed clients fails `npm test` and CI.
//   node scripts/proto-breaking.mjs            check proto/ against the last release
//   node scripts/proto-breaking.mjs --release  record proto/ as the release of package.json's version
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
export const RELEASES_DIR = path.join(ROOT, 'releases', 'proto');
const BUF = path.join(ROOT, 'node_modules', '.bin', 'buf');

/** Path of the newest released image (highest vX.Y.Z), or undefined when nothing was released. */
export function latestRelease(dir = RELEASES_DIR) {
  const versions = readdirSync(dir)
    .map((name) => /^v(\d+)\.(\d+)\.(\d+)\.binpb$/.exec(name))
    .filter((m) => m !== null)
    .map((m) => ({ file: m[0], key: m.slice(1, 4).map(Number) }))
    .sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1] || a.key[2] - b.key[2]);
  const newest = versions.at(-1);
  return newest && path.join(dir, newest.file);
}

function main() {
  if (process.argv.includes('--release')) {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    const out = path.join(RELEASES_DIR, `v${version}.binpb`);
    execFileSync(BUF, ['build', '--exclude-source-info', '-o', out], { cwd: ROOT, stdio: 'inherit' });
    console.log(`recorded proto/ as release v${version}: ${path.relative(ROOT, out)}`);
    return;
  }
  const against = latestRelease();
  if (against === undefined) throw new Error(`no released proto in ${RELEASES_DIR}`);
  try {
    execFileSync(BUF, ['breaking', '--against', against], { cwd: ROOT, stdio: 'inherit' });
  } catch {
    console.error(`proto/ breaks compatibility with ${path.basename(against, '.binpb')} (above); a breaking change needs a new package (clickanalytics.v2)`);
    process.exit(1);
  }
  console.log(`buf breaking: proto/ is compatible with ${path.basename(against, '.binpb')}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) main();
