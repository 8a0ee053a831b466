import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/build-setup.ts", "test/global-setup.ts"],
    // Every test file talks to a real server and a real MongoDB engine.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Type tests (*.test-d.ts): checked by tsc over the whole project, never executed.
    typecheck: {
      enabled: true,
      include: ["test/**/*.test-d.ts"],
      tsconfig: "./tsconfig.json",
    },
  },
});
