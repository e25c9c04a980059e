import { defineConfig } from "vitest/config";

/**
 * The suites that need neither the kernel nor terraform: in-process API,
 * CA, codec and architecture checks (CI runs them again on the oldest Node).
 * They share one module graph (isolate: false): importing the API's module
 * tree costs about 2 s a file. What test support keeps per file's run is
 * reset before each file (test/support/per-file.ts).
 */
const UNIT_SUITE = ["test/abi/**", "test/api/**", "test/ca/**", "test/architecture/**", "test/security/**", "test/newcomer/readme-steps.test.ts"];

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Kernel tests share bpffs, cgroups and namespaces: files run one at a time.
    fileParallelism: false,
    reporters: ["default", "json"],
    outputFile: { json: ".weft/test-report.json" },
    projects: [
      { extends: true, test: { name: "unit", include: UNIT_SUITE.map((g) => (g.endsWith("**") ? `${g}/*.test.ts` : g)), isolate: false, setupFiles: ["test/support/per-file.ts"] } },
      { extends: true, test: { name: "system", include: ["test/**/*.test.ts"], exclude: [...UNIT_SUITE, "**/node_modules/**"] } },
    ],
  },
});
