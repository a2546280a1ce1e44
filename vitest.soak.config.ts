import { defineConfig } from "vitest/config";

/** `npm run soak`: the full virtual-time soak (docs/soak.md); the short run is part of `npm test`. */
export default defineConfig({
  test: {
    include: ["test/soak/**/*.soak.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    pool: "forks",
    testTimeout: 3_600_000,
    hookTimeout: 120_000,
  },
});
