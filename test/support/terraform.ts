// Drives the real terraform binary against Weft's provider, the way a user
// runs it before the provider is published: a CLI configuration with
// dev_overrides pointing "weft/weft" at terraform/bin, no `terraform init`,
// no network.
import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { cp, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const REPO = resolve(import.meta.dirname, "../..");
/** Where dev_overrides points "weft/weft": the directory holding terraform-provider-weft. */
export const PROVIDER_DIR = join(REPO, "terraform/bin");
export const PROVIDER_BINARY = join(PROVIDER_DIR, "terraform-provider-weft");
export const EXAMPLES = join(REPO, "examples");

/** Why terraform cannot run here, or null when `terraform version` works. */
export function terraformUnavailable(): string | null {
  const res = spawnSync("terraform", ["version", "-json"], { encoding: "utf8", timeout: 30_000, env: terraformEnv(null) });
  if (res.error) return `the terraform binary cannot be run: ${res.error.message}`;
  if (res.status !== 0) return `terraform version exited with ${res.status}: ${res.stderr}`;
  return null;
}

/** Why the provider cannot run here, or null when its executable is in place. */
export function providerUnavailable(): string | null {
  return existsSync(PROVIDER_BINARY) ? null : `${PROVIDER_BINARY} does not exist`;
}

/**
 * The environment terraform runs in: the caller's, without any TF_* setting
 * of the machine (its CLI config, plugin cache, log level), plus ours.
 */
export function terraformEnv(cliConfigFile: string | null, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("TF_") && !k.startsWith("WEFT_")) env[k] = v;
  // The provider must never pick up the test run's database or operator settings.
  delete env.DATABASE_URL;
  Object.assign(env, { TF_IN_AUTOMATION: "1", TF_INPUT: "0", CHECKPOINT_DISABLE: "1" });
  if (cliConfigFile !== null) env.TF_CLI_CONFIG_FILE = cliConfigFile;
  return { ...env, ...extra };
}

/** The CLI configuration a user writes (~/.terraformrc or TF_CLI_CONFIG_FILE). */
export function cliConfig(providerDir = PROVIDER_DIR): string {
  return `provider_installation {
  dev_overrides {
    "weft/weft" = ${JSON.stringify(providerDir)}
  }
  direct {}
}
`;
}

export interface TerraformRun {
  args: string[];
  code: number;
  stdout: string;
  stderr: string;
}

/** One entry of `terraform show -json PLAN`'s resource_changes or resource_drift. */
export interface ResourceChange {
  address: string;
  type: string;
  name: string;
  mode: "managed" | "data";
  change: { actions: string[]; before: unknown; after: unknown; after_unknown?: unknown; importing?: { id: string } };
}

export interface Plan {
  /** -detailed-exitcode: 0 no changes, 2 changes (1 is an error and throws). */
  exitCode: 0 | 2;
  file: string;
  run: TerraformRun;
  json: { resource_changes?: ResourceChange[]; resource_drift?: ResourceChange[]; [key: string]: unknown };
  /** Managed resources whose actions are not no-op. */
  changes: { address: string; actions: string[] }[];
  /** Managed resources that changed outside Terraform. */
  drift: { address: string; actions: string[] }[];
}

/** A `terraform plan -json` / `apply -json` message of type "diagnostic". */
export interface JsonDiagnostic {
  severity: "error" | "warning";
  summary: string;
  detail: string;
  address?: string;
  range?: { filename: string; start: { line: number; column: number }; end: { line: number; column: number } };
  snippet?: { context: string | null; code: string; start_line: number };
}

export class TerraformError extends Error {
  constructor(readonly run: TerraformRun) {
    super(`terraform ${run.args.join(" ")} exited with ${run.code}\n--- stdout\n${run.stdout}\n--- stderr\n${run.stderr}`);
  }
}

const DEFAULT_TIMEOUT_MS = 120_000;

/**
 * A throwaway Terraform working directory: its own CLI configuration,
 * state and plan files. Variables set in `vars` are passed as -var to every
 * command that evaluates the configuration.
 */
export class Workspace {
  readonly vars: Record<string, string | number | boolean | null> = {};
  private planCount = 0;

  private constructor(
    readonly dir: string,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  /** A new directory; `env` adds to terraform's environment (WEFT_ENDPOINT, WEFT_TOKEN). */
  static async create(env: Record<string, string> = {}, providerDir = PROVIDER_DIR): Promise<Workspace> {
    const dir = await mkdtemp(join(tmpdir(), "weft-tf-"));
    const rc = join(dir, "terraform.rc");
    await writeFile(rc, cliConfig(providerDir));
    return new Workspace(dir, terraformEnv(rc, env));
  }

  /** Copies an example's files (examples/<name>/*) into the working directory. */
  async copyExample(name: string): Promise<void> {
    await cp(join(EXAMPLES, name), this.dir, { recursive: true, filter: (src) => !/\.terraform|tfstate|\.tfplan$/.test(src) });
  }

  async write(file: string, content: string): Promise<void> {
    await writeFile(join(this.dir, file), content);
  }

  async read(file: string): Promise<string> {
    return readFile(join(this.dir, file), "utf8");
  }

  async remove(file: string): Promise<void> {
    await rm(join(this.dir, file), { force: true });
  }

  async dispose(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }

  varArgs(): string[] {
    return Object.entries(this.vars)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => `-var=${k}=${String(v)}`);
  }

  /**
   * Runs terraform in the directory; resolves with its exit code and
   * output whatever the code. The whole process group (terraform and the
   * provider it starts) is killed after the timeout.
   */
  run(args: string[], timeoutMs = DEFAULT_TIMEOUT_MS): Promise<TerraformRun> {
    return new Promise((resolvePromise, reject) => {
      const child = spawn("terraform", args, { cwd: this.dir, env: this.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
      let timedOut = false;
      const timer = setTimeout(() => {
        timedOut = true;
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          // already gone
        }
      }, timeoutMs);
      child.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      child.on("close", (code, signal) => {
        clearTimeout(timer);
        // The provider belongs to terraform's process group: make sure none outlives it.
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {
          // the group is empty
        }
        if (timedOut) {
          reject(new Error(`terraform ${args.join(" ")} timed out after ${timeoutMs} ms\n--- stdout\n${stdout}\n--- stderr\n${stderr}`));
          return;
        }
        resolvePromise({ args, code: code ?? (signal ? 128 : 1), stdout, stderr });
      });
    });
  }

  /** Runs terraform and throws TerraformError unless the exit code is one of `ok`. */
  async must(args: string[], ok: number[] = [0], timeoutMs?: number): Promise<TerraformRun> {
    const run = await this.run(args, timeoutMs);
    if (!ok.includes(run.code)) throw new TerraformError(run);
    return run;
  }

  /** `terraform plan -out` with -detailed-exitcode, then `terraform show -json` of the saved plan. */
  async plan(extra: string[] = []): Promise<Plan> {
    const file = `plan-${++this.planCount}.tfplan`;
    const run = await this.must(["plan", "-input=false", "-no-color", "-detailed-exitcode", `-out=${file}`, ...this.varArgs(), ...extra], [0, 2]);
    const shown = await this.must(["show", "-json", "-no-color", file]);
    const json = JSON.parse(shown.stdout) as Plan["json"];
    const managed = (list: ResourceChange[] | undefined) =>
      (list ?? [])
        .filter((c) => c.mode === "managed" && !(c.change.actions.length === 1 && c.change.actions[0] === "no-op"))
        .map((c) => ({ address: c.address, actions: c.change.actions }));
    return {
      exitCode: run.code as 0 | 2,
      file,
      run,
      json,
      changes: managed(json.resource_changes),
      drift: managed(json.resource_drift),
    };
  }

  /** `terraform plan -json`: every diagnostic, whatever the exit code. */
  async planDiagnostics(extra: string[] = []): Promise<{ run: TerraformRun; diagnostics: JsonDiagnostic[] }> {
    const run = await this.run(["plan", "-input=false", "-json", ...this.varArgs(), ...extra]);
    return { run, diagnostics: jsonDiagnostics(run.stdout) };
  }

  /** Applies a saved plan, or plans and applies with -auto-approve when none is given. */
  async apply(planFile?: string): Promise<TerraformRun> {
    const args = planFile === undefined ? ["apply", "-input=false", "-no-color", "-auto-approve", ...this.varArgs()] : ["apply", "-input=false", "-no-color", planFile];
    return this.must(args);
  }

  /** Applies and answers the run whatever its outcome (for the failures under test). */
  async tryApply(planFile?: string): Promise<TerraformRun> {
    const args = planFile === undefined ? ["apply", "-input=false", "-no-color", "-auto-approve", ...this.varArgs()] : ["apply", "-input=false", "-no-color", planFile];
    return this.run(args);
  }

  async importResource(address: string, id: string): Promise<TerraformRun> {
    return this.must(["import", "-input=false", "-no-color", ...this.varArgs(), address, id]);
  }

  async destroy(): Promise<TerraformRun> {
    return this.must(["destroy", "-input=false", "-no-color", "-auto-approve", ...this.varArgs()]);
  }

  /** `terraform show -json` of the state: resource address → its values. */
  async state(): Promise<Map<string, Record<string, unknown>>> {
    const run = await this.must(["show", "-json", "-no-color"]);
    const json = JSON.parse(run.stdout) as { values?: { root_module?: { resources?: { address: string; values: Record<string, unknown> }[] } } };
    return new Map((json.values?.root_module?.resources ?? []).map((r) => [r.address, r.values]));
  }

  /** `terraform output -json`: output name → value. */
  async outputs(): Promise<Record<string, unknown>> {
    const run = await this.must(["output", "-json", "-no-color"]);
    const json = JSON.parse(run.stdout) as Record<string, { value: unknown }>;
    return Object.fromEntries(Object.entries(json).map(([k, v]) => [k, v.value]));
  }
}

/** The diagnostics among the JSON lines of `terraform plan -json` / `apply -json`. */
export function jsonDiagnostics(stdout: string): JsonDiagnostic[] {
  const out: JsonDiagnostic[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    const msg = JSON.parse(line) as { type?: string; diagnostic?: JsonDiagnostic };
    if (msg.type === "diagnostic" && msg.diagnostic) out.push(msg.diagnostic);
  }
  return out;
}

/** The 1-based line of the first line of `text` that matches `pattern`: where a diagnostic should point. */
export function lineOf(text: string, pattern: RegExp): number {
  const i = text.split("\n").findIndex((l) => pattern.test(l));
  if (i < 0) throw new Error(`no line matches ${pattern}`);
  return i + 1;
}

export interface RestResponse {
  status: number;
  body: any;
  text: string;
}

/** A minimal client of the Weft API for checking what Terraform did (and for changing things behind its back). */
export function restClient(base: string, token: string) {
  return async function rest(method: string, path: string, body?: unknown): Promise<RestResponse> {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    return { status: res.status, body: parsed, text };
  };
}

/**
 * Joins a node the way an agent does: a join token from the operator (which
 * fixes the node's labels), then POST /v1/nodes/register; answers its pod CIDR block.
 */
export async function registerNode(base: string, operatorToken: string, name: string, zone = "zone-a", labels?: Record<string, string>): Promise<string> {
  const rest = restClient(base, operatorToken);
  const minted = await rest("POST", "/v1/join-tokens", labels ? { labels } : {});
  if (minted.status !== 201) throw new Error(`join token: ${minted.status} ${minted.text}`);
  const registered = await fetch(`${base}/v1/nodes/register`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ joinToken: minted.body.token, name, zone }),
  });
  if (registered.status !== 201) throw new Error(`register: ${registered.status} ${await registered.text()}`);
  return ((await registered.json()) as { node: { podCidr: string } }).node.podCidr;
}
