/**
 * Headless Chromium for the browser tests (the HTML report, the live dashboard): found on PATH,
 * installed with apt where missing and allowed (as root on Debian). Where it cannot be had, a
 * test skips with the reason, except on CI (CI set), where it fails: CI runs as root with
 * Debian's packages, so Chromium must be there and a skip would hide a broken page.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { promisify } from "node:util";
import { expect, type TestContext } from "vitest";

const run = promisify(execFile);

const CANDIDATES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"];

export interface ChromiumLookup {
  path?: string;
  reason?: string;
}

async function findChromium(): Promise<string | undefined> {
  for (const name of CANDIDATES) {
    try {
      const { stdout } = await run("sh", ["-c", `command -v ${name}`]);
      if (stdout.trim() !== "") return stdout.trim();
    } catch {
      // not this one
    }
  }
  return undefined;
}

/** Chromium's path, installing Debian's package when missing and allowed; else why not. */
export async function ensureChromium(): Promise<ChromiumLookup> {
  const found = await findChromium();
  if (found) return { path: found };
  if (process.platform !== "linux" || process.getuid?.() !== 0) return { reason: "chromium is not installed, and installing it needs root on Linux (apt-get install -y chromium)" };
  if (!existsSync("/usr/bin/apt-get")) return { reason: "chromium is not installed and there is no apt-get to install it" };
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    await run("apt-get", ["update"], { env, timeout: 180_000, maxBuffer: 64 * 1024 * 1024 });
    await run("apt-get", ["install", "-y", "--no-install-recommends", "chromium"], { env, timeout: 420_000, maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    return { reason: `chromium is not installed and apt-get could not install it: ${(error as Error).message.split("\n")[0]}` };
  }
  const installed = await findChromium();
  return installed ? { path: installed } : { reason: "apt-get installed chromium but no chromium binary is on PATH" };
}

/** Flags for a quiet headless Chromium that fetches nothing of its own. */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-dev-shm-usage",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-extensions",
  "--hide-scrollbars",
  "--mute-audio",
];

/** The flags with a profile directory of its own, for Chromium run from the command line. */
export function chromiumArgs(profile: string): string[] {
  return [...CHROMIUM_FLAGS, `--user-data-dir=${profile}`];
}

/** On CI (CI=true, as CI services set it) the browser tests must run. */
export const ON_CI = process.env.CI !== undefined && !["", "0", "false"].includes(process.env.CI.trim().toLowerCase());

/** Chromium's path; without one the test is skipped with the reason (failed on CI). */
export function chromiumOrSkip(chromium: ChromiumLookup, ctx: TestContext): string | undefined {
  if (chromium.path) return chromium.path;
  if (ON_CI) expect.fail(`headless Chromium unavailable on CI (CI=${process.env.CI}), where it must run: ${chromium.reason}`);
  ctx.skip(`headless Chromium unavailable: ${chromium.reason}`);
  return undefined;
}
