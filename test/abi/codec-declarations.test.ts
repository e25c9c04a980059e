/**
 * wasm/pkg/weft_codec.d.ts is written by hand beside hand-written JS glue, so
 * nothing else ties the two together: this test fails when they disagree.
 * It lists the glue's runtime exports with their kind ("object", or
 * "function/N" with N = the function's length) and has tsc check that list,
 * written as an object literal, against the type derived from the .d.ts:
 * an export only one side has, or a different kind or arity, is a type error
 * naming the export. tsc also checks the .d.ts itself (skipLibCheck off).
 */
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import * as codec from "@weft/codec";
import { describe, expect, it } from "vitest";

const declarations = fileURLToPath(new URL("../../wasm/pkg/weft_codec.d.ts", import.meta.url));
const tsc = join(createRequire(import.meta.url).resolve("typescript/package.json"), "../bin/tsc");

const kindOf = (v: unknown): string => (typeof v === "function" ? `function/${v.length}` : typeof v);

const runtimeKinds = (): Record<string, string> =>
  Object.fromEntries(Object.entries(codec).map(([name, value]) => [name, kindOf(value)]));

/**
 * tsc's complaints about `kinds` against the .d.ts, one line each, led by
 * what they concern ("" when the two agree).
 */
async function typeErrors(kinds: Record<string, string>): Promise<string> {
  const names = Object.keys(kinds);
  const union = (xs: string[]): string => (xs.length === 0 ? "never" : xs.map((x) => JSON.stringify(x)).join(" | "));
  const lines: [concern: string, source: string][] = [
    ["", 'import * as codec from "@weft/codec";'],
    ["", "type Declared = keyof typeof codec;"],
    ["", `type Glue = ${union(names)};`],
    [
      "",
      'type Kind<T> = T extends (...args: never[]) => unknown ? `function/${Parameters<T>["length"]}` : T extends object ? "object" : T extends bigint ? "bigint" : T extends number ? "number" : T extends string ? "string" : "boolean";',
    ],
    ["", "type KindOf<N extends string> = N extends Declared ? Kind<(typeof codec)[N]> : string;"],
    ["exported by the glue, not declared", "export const onlyInGlue: [Exclude<Glue, Declared>] extends [never] ? true : Exclude<Glue, Declared> = true;"],
    ["declared, not exported by the glue", "export const onlyDeclared: [Exclude<Declared, Glue>] extends [never] ? true : Exclude<Declared, Glue> = true;"],
    ...names.map((name, i): [string, string] => [`kind or arity of ${name}`, `export const kind${i}: KindOf<${JSON.stringify(name)}> = ${JSON.stringify(kinds[name])};`]),
  ];
  const dir = mkdtempSync(join(tmpdir(), "weft-codec-dts-"));
  try {
    writeFileSync(join(dir, "check.ts"), lines.map(([, source]) => source).join("\n") + "\n");
    const compilerOptions = {
      target: "ES2022",
      module: "NodeNext",
      moduleResolution: "NodeNext",
      lib: ["ES2023"],
      types: [],
      strict: true,
      skipLibCheck: false,
      noEmit: true,
      paths: { "@weft/codec": [declarations] },
    };
    writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({ compilerOptions, files: ["check.ts"] }));
    try {
      await promisify(execFile)(process.execPath, [tsc, "-p", dir, "--pretty", "false"]);
      return "";
    } catch (e) {
      const { stdout, stderr, message } = e as { stdout?: string; stderr?: string; message: string };
      const output = `${stdout ?? ""}${stderr ?? ""}` || message;
      // "check.ts(7,14): error ..." -> "<concern>: error ..."; errors elsewhere (in the .d.ts) stay as they are.
      return output.replace(/^\S*check\.ts\((\d+),\d+\): /gm, (_m, line: string) => `${lines[Number(line) - 1]?.[0] || "check.ts"}: `);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("weft_codec.d.ts", () => {
  it("declares exactly the glue's exports, each with its kind and arity", async () => {
    expect(await typeErrors(runtimeKinds())).toBe("");
  });

  // The check must be able to fail: an export only the JS has, one only the
  // .d.ts has and a wrong arity are each reported by name.
  it("names an undeclared export, a missing one and a wrong arity", async () => {
    const { sumPerCpu: _missing, ...rest } = runtimeKinds();
    const errors = await typeErrors({ ...rest, encodeKey: "function/3", lookupPolicy: "function/2" });
    expect(errors).toMatch(/^exported by the glue, not declared: .*"lookupPolicy"/m);
    expect(errors).toMatch(/^declared, not exported by the glue: .*"sumPerCpu"/m);
    expect(errors).toMatch(/^kind or arity of encodeKey: .*"function\/3"/m);
  });
});
