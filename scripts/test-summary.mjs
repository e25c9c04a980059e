// Prints vitest's JSON report as the one plain line CI reads:
// "N passed, N failed" (", N skipped" when any). Exits non-zero when
// anything failed or when no test ran at all.
import { readFileSync } from "node:fs";

const path = process.argv[2] ?? ".weft/test-report.json";
let report;
try {
  report = JSON.parse(readFileSync(path, "utf8"));
} catch (err) {
  console.log("0 passed, 1 failed");
  console.error(`no vitest report at ${path}: ${err.message}`);
  process.exit(1);
}
// A file that throws before declaring tests (a prerequisite demanded by CI
// but missing) has no assertions; count it as one failure so it cannot vanish.
const brokenFiles = report.testResults.filter((f) => f.status === "failed" && f.assertionResults.length === 0).length;
const passed = report.numPassedTests;
const failed = report.numFailedTests + brokenFiles;
const skipped = report.numPendingTests + report.numTodoTests;
console.log(`${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
