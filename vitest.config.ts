import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/build-setup.ts", "test/global-setup.ts"],
    // Every test file talks to a real server and a real MongoDB engine.
    testTimeout: 30_000,
    // Two files at a time on the 2-core machines this runs on: the calibration simulations are
    // CPU-bound and the end-to-end files mostly wait on their servers, so one of each overlaps
    // well (vitest's default there is one worker: the suite ran serially).
    maxWorkers: 2,
    hookTimeout: 60_000,
    // Type tests (*.test-d.ts): checked by tsc over the whole project, never executed.
    typecheck: {
      enabled: true,
      include: ["test/**/*.test-d.ts"],
      tsconfig: "./tsconfig.json",
    },
  },
});
