import { describe, expect, it } from "vitest";
import { IMPORT_RULES, repoRoot, specifiersOf, violationsIn, violationsInRepo } from "./import-rules.ts";

describe("what each part never imports", () => {
  it("holds across the repository", () => {
    expect(violationsInRepo(repoRoot())).toEqual([]);
  });

  it("finds static, side-effect and dynamic imports and re-exports", () => {
    const source = [
      'import { a } from "./a.ts";',
      'import type { B } from "../b.ts";',
      'import "./side.ts";',
      'export { c } from "@scope/pkg/sub";',
      'const d = await import("pg");',
    ].join("\n");
    expect(specifiersOf(source)).toEqual(["./a.ts", "../b.ts", "./side.ts", "@scope/pkg/sub", "pg"]);
  });

  // The rule test must be able to fail: one forbidden import per rule is caught.
  it.each(IMPORT_RULES.map((r) => [r.part, r] as const))("catches a forbidden import in %s", (_part, rule) => {
    const file = `${rule.part}x/probe.ts`;
    const forbidden = rule.never[0]!;
    const specifier = forbidden.endsWith("/")
      ? `${"../".repeat(file.split("/").length - 1)}${forbidden}y.ts`
      : forbidden;
    expect(violationsIn(file, `import { z } from "${specifier}";\n`)).toHaveLength(1);
    expect(violationsIn(file, 'import { z } from "./fine.ts";\n')).toEqual([]);
  });
});
