// Lint: eslint's recommended rules plus typescript-eslint's type-aware ones that catch the
// bugs a server cares about (a forgotten await, a promise where a callback is expected).
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["gen/**", "node_modules/**", "dist/**", ".data/**", ".scratch/**", "examples/**/gen/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ["**/*.ts"],
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-floating-promises": "error",
      "@typescript-eslint/no-misused-promises": ["error", { checksVoidReturn: { arguments: false } }],
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-explicit-any": "off",
      "no-empty": ["error", { allowEmptyCatch: true }],
    },
  },
  {
    files: ["**/*.js"],
    languageOptions: { globals: { process: "readonly", URL: "readonly" } },
  },
  {
    // The dashboard's page scripts run in the browser.
    files: ["src/dashboard/public/**/*.js"],
    languageOptions: {
      globals: { document: "readonly", fetch: "readonly", sessionStorage: "readonly", setTimeout: "readonly", clearTimeout: "readonly" },
    },
  },
);
