import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/build-setup.ts", "test/global-setup.ts"],
    // Every test file talks to a real server and a real MongoDB engine.
    testTimeout: 30_000,
    hookTimeout: 60_000,
  },
});
