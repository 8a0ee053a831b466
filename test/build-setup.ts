// Compiles dist/ once before any test file runs: the end-to-end tests start the compiled server
// and pack the compiled client, and building from several test files at once would race.
import { execFile } from "node:child_process";
import { resolve } from "node:path";
import { promisify } from "node:util";

export default async function setup(): Promise<void> {
  await promisify(execFile)("npm", ["run", "build", "--silent"], { cwd: resolve(import.meta.dirname, "..") });
}
