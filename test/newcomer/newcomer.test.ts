/**
 * The newcomer test: README.md followed from a clean clone, as written, in
 * one shell (test/newcomer/shell.ts says what "works" means for a step). The
 * steps are the README's fenced blocks marked `<!-- newcomer-test: run -->`,
 * in document order (readme-steps.ts), then `npx weft --help` when the
 * package has a `weft` bin. The test fails on the first step that does not
 * work, naming its README line and command, with what it printed.
 *
 * The clone is of the checkout's working tree as it is (`git stash create`:
 * uncommitted edits to tracked files included). `npm ci` runs offline from
 * npm's cache (npm_config_offline): what CI's own `npm ci` just filled.
 * The newcomer's environment is a bare one: the machine's PATH without any
 * node_modules/.bin (so its older node is the one on the PATH), a HOME of its
 * own, no DATABASE_URL or WEFT_* settings; every server a step starts must
 * still run on a Node that package.json's engines accept. Placeholders the
 * README asks the reader to fill are filled with what the reader would have:
 * `weft_op_...` with the operator token the first start printed; any other
 * `...` in a command is an error.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { commandUnavailableReason, skipWithout } from "../support/prerequisites.ts";
import { type ReadmeStep, readmeSteps } from "./readme-steps.ts";
import { Shell } from "./shell.ts";

const repoRoot = new URL("../../", import.meta.url).pathname;
const OPERATOR_TOKEN = /weft_op_[A-Za-z0-9_-]{20,}/;
const OPERATOR_PLACEHOLDER = "weft_op_...";
const STEP_BOUND_MS = 5 * 60_000;

function unavailableReason(): string | null {
  if (process.platform !== "linux") return `platform is ${process.platform}, not linux`;
  if (process.getuid?.() !== 0) return "not running as root (the walk-through runs in a network namespace of its own, so that its fixed port 8080 is free)";
  for (const [command, args, pkg] of [
    ["unshare", ["--version"], "util-linux"],
    ["nsenter", ["--version"], "util-linux"],
    ["ss", ["-V"], "iproute2"],
    ["git", ["--version"], "git"],
    ["curl", ["--version"], "curl"],
    ["jq", ["--version"], "jq"],
    ["openssl", ["version"], "openssl"],
    ["terraform", ["version"], "terraform 1.5 or newer"],
  ] as const) {
    const reason = commandUnavailableReason(command, args, `apt-get install ${pkg}`);
    if (reason !== null) return reason;
  }
  return null;
}

/** The machine's PATH as a newcomer's shell has it: no project's node_modules/.bin in front. */
const barePath = () =>
  (process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin")
    .split(":")
    .filter((d) => !/node_modules[/\\]\.bin$/.test(d))
    .join(":");

/**
 * A commit of the checkout as it is, uncommitted edits to tracked files included (`git stash create`),
 * or HEAD when there are none. Other suites run git in this checkout at the same time (git check-ignore,
 * a refreshed index), and stash create then fails on the index lock: it is tried again, briefly.
 */
function worktreeCommit(): string {
  for (let attempt = 1; ; attempt++) {
    try {
      return execFileSync("git", ["-C", repoRoot, "stash", "create"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim() || "HEAD";
    } catch (err) {
      if (attempt >= 20) throw new Error(`git stash create failed 20 times: ${(err as { stderr?: string }).stderr ?? String(err)}`);
      execFileSync("sleep", ["0.25"]);
    }
  }
}

describe.skipIf(skipWithout("the newcomer test", unavailableReason()))("a newcomer following README.md from a clean clone", () => {
  let scratch: string;
  let clone: string;
  let shell: Shell | undefined;
  let operatorToken: string | undefined;
  const timings: string[] = [];

  beforeAll(() => {
    scratch = mkdtempSync(join(tmpdir(), "weft-newcomer-"));
    clone = join(scratch, "weft");
    const tree = worktreeCommit();
    execFileSync("git", ["clone", "-q", "--shared", "--no-checkout", repoRoot, clone]);
    execFileSync("git", ["-C", clone, "checkout", "-q", "--detach", execFileSync("git", ["-C", repoRoot, "rev-parse", tree], { encoding: "utf8" }).trim()]);
  });

  afterAll(async () => {
    await shell?.close();
    if (timings.length > 0) console.log(`newcomer steps:\n${timings.join("\n")}`);
    rmSync(scratch, { recursive: true, force: true });
  });

  /** Runs one step; throws naming it when it does not work as written. */
  async function take(step: ReadmeStep, where: string): Promise<void> {
    const name = `${where} \`${step.code}\``;
    const placeholders = step.code.replaceAll(OPERATOR_PLACEHOLDER, "").match(/\S*\.\.\.\S*/g);
    if (placeholders) throw new Error(`${name}: a placeholder the newcomer test cannot fill: ${placeholders.join(", ")}`);
    if (step.code.includes(OPERATOR_PLACEHOLDER) && operatorToken === undefined) throw new Error(`${name}: asks for the printed operator token, but no start printed one`);
    const script = operatorToken === undefined ? step.script : step.script.replaceAll(OPERATOR_PLACEHOLDER, operatorToken);
    const started = Date.now();
    let result;
    try {
      result = await shell!.run(script, step.assigns, STEP_BOUND_MS);
    } catch (err) {
      throw new Error(`${name}: ${(err as Error).message}\n--- the shell printed ---\n${tail(shell!.output())}`);
    }
    timings.push(`  ${((Date.now() - started) / 1000).toFixed(1).padStart(6)} s  ${where} ${step.code.slice(0, 90)}`);
    const said = `\n--- it printed ---\n${tail(result.output)}`;
    if (result.status !== 0 && !(result.interrupted && result.status === 130)) throw new Error(`${name}: exited ${result.status}${said}`);
    if (result.unsetVariables.length > 0) throw new Error(`${name}: left ${result.unsetVariables.join(", ")} empty or null${said}`);
    if (result.interrupted && operatorToken === undefined) operatorToken = OPERATOR_TOKEN.exec(result.output)?.[0];
    for (const server of [result.interrupted, result.background]) if (server) expectSupportedNode(name, server.executable);
  }

  /** A server the README starts runs on a Node that package.json's engines accept, whatever node the PATH has. */
  function expectSupportedNode(name: string, executable: string): void {
    const engines = (JSON.parse(readFileSync(join(clone, "package.json"), "utf8")) as { engines?: { node?: string } }).engines?.node ?? "";
    const oldest = Number(/\d+/.exec(engines)?.[0] ?? 0);
    const version = execFileSync(executable, ["-p", "process.versions.node"], { encoding: "utf8" }).trim();
    if (Number(version.split(".")[0]) < oldest) throw new Error(`${name}: its server runs on Node ${version} (${executable}), older than package.json's engines ${engines}`);
  }

  it(
    "every marked README step works as written, then the package's weft command",
    async () => {
      const steps = readmeSteps(readFileSync(join(clone, "README.md"), "utf8"));
      expect(steps.length).toBeGreaterThan(0);
      const home = join(scratch, "home");
      execFileSync("mkdir", ["-p", home]);
      const env = {
        PATH: barePath(),
        HOME: home,
        LANG: "C.UTF-8",
        TERM: "dumb",
        NO_COLOR: "1",
        CHECKPOINT_DISABLE: "1",
        npm_config_cache: execFileSync("npm", ["config", "get", "cache"], { encoding: "utf8" }).trim(),
        npm_config_offline: "true",
        npm_config_update_notifier: "false",
      };
      shell = await Shell.start(clone, env, scratch);
      for (const step of steps) await take(step, `README.md:${step.line}`);

      const pkg = JSON.parse(readFileSync(join(clone, "package.json"), "utf8")) as { bin?: string | Record<string, string> };
      if (typeof pkg.bin === "object" && "weft" in pkg.bin) {
        await take({ line: 0, script: `cd ${JSON.stringify(clone)} && npx weft --help`, code: "npx weft --help", background: false, assigns: [] }, "package.json bin");
      }
    },
    30 * 60_000,
  );
});

function tail(text: string, lines = 40): string {
  return text.split("\n").slice(-lines).join("\n");
}
