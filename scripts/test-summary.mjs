// Prints vitest's JSON reports as the one plain line CI reads, last:
// "N passed, N failed" (", N skipped" when any), added up over every report.
// With several reports (CI runs the whole suite on Node 24 and the unit
// suite on Node 22), each gets a line of its own first, under its label:
//   node scripts/test-summary.mjs [REPORT.json[=LABEL] ...]
// Exits non-zero when anything failed, when a report is missing, or when a
// report ran no test at all.
import { readFileSync } from "node:fs";

const args = process.argv.length > 2 ? process.argv.slice(2) : [".weft/test-report.json"];

/** Counts of one report; a missing or unreadable report is one failure. */
function count(path) {
  let report;
  try {
    report = JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    console.error(`no vitest report at ${path}: ${err.message}`);
    return { passed: 0, failed: 1, skipped: 0 };
  }
  // A file that throws before declaring tests (a prerequisite demanded by CI
  // but missing) has no assertions; count it as one failure so it cannot vanish.
  const brokenFiles = report.testResults.filter((f) => f.status === "failed" && f.assertionResults.length === 0).length;
  return {
    passed: report.numPassedTests,
    failed: report.numFailedTests + brokenFiles,
    skipped: report.numPendingTests + report.numTodoTests,
  };
}

const line = ({ passed, failed, skipped }) => `${passed} passed, ${failed} failed${skipped > 0 ? `, ${skipped} skipped` : ""}`;

const total = { passed: 0, failed: 0, skipped: 0 };
let emptyRun = false;
for (const arg of args) {
  const cut = arg.indexOf("=");
  const [path, label] = cut < 0 ? [arg, arg] : [arg.slice(0, cut), arg.slice(cut + 1)];
  const counts = count(path);
  if (counts.passed === 0) emptyRun = true;
  if (args.length > 1) console.log(`${label}: ${line(counts)}`);
  for (const k of Object.keys(total)) total[k] += counts[k];
}
console.log(line(total));
process.exit(total.failed > 0 || emptyRun ? 1 : 0);
