import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Kernel tests share bpffs, cgroups and namespaces: files run one at a time.
    fileParallelism: false,
    reporters: ["default", "json"],
    outputFile: { json: ".weft/test-report.json" },
  },
});
