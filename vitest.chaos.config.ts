import { defineConfig } from "vitest/config";

/** `npm run chaos`: the chaos scenarios, one at a time (they kill processes and databases). */
export default defineConfig({
  test: {
    include: ["test/chaos/**/*.chaos.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    pool: "forks",
    fileParallelism: false,
    testTimeout: 900_000,
    hookTimeout: 120_000,
  },
});
