/**
 * One bash, as a newcomer's terminal: the README's steps run in it one after
 * another, so `cd`, variables and background jobs carry over from step to
 * step. It runs in a network namespace of its own with only loopback up, so
 * the README's fixed port (8080) is the test's alone and nothing the steps do
 * reaches beyond the machine (npm works from its cache).
 *
 * What "works as written" means for a step:
 * - it exits 0 (bash with pipefail; curl behaves as with --fail-with-body, so
 *   an HTTP error is a failure, not a silent problem+json);
 * - every variable it assigns is set, and not jq's "null";
 * - a command the README puts in the background (`npm start &`) is a server:
 *   it must listen on a TCP port;
 * - a command that starts listening while still running in the foreground
 *   (`npm start`) is a server the newcomer stops with Ctrl-C: it gets SIGINT
 *   once it listens and must then end within 20 s.
 * Prompts (terraform apply's "Enter a value") are answered "yes".
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { until } from "../support/until.ts";

export interface Listener {
  pid: number;
  address: string;
  /** The listening process's executable (for a server: which node runs it). */
  executable: string;
}

export interface StepResult {
  status: number;
  /** What the step printed (and what background jobs printed meanwhile). */
  output: string;
  /** Assigned variables that ended up empty or "null". */
  unsetVariables: string[];
  /** A server the step left running in the background, once it listens. */
  background?: Listener;
  /** A server that listened in the foreground and was stopped with SIGINT. */
  interrupted?: Listener;
}

const FOREGROUND_STOP_MS = 20_000;
const BACKGROUND_LISTEN_MS = 120_000;

export class Shell {
  private transcript = "";
  private control = "";
  private readonly known = new Set<string>();
  private lastBackground = "";
  private stepNo = 0;

  private constructor(
    private readonly bash: ChildProcess,
    private readonly dir: string,
  ) {
    bash.stdout!.on("data", (d: Buffer) => (this.transcript += d.toString()));
    bash.stderr!.on("data", (d: Buffer) => (this.transcript += d.toString()));
    (bash.stdio[3] as NodeJS.ReadableStream).on("data", (d: Buffer) => (this.control += d.toString()));
  }

  /** A bash in a fresh network namespace, in `cwd`, with exactly `env`; `dir` holds its scratch files. */
  static async start(cwd: string, env: Record<string, string>, dir: string): Promise<Shell> {
    const answers = join(dir, "answers");
    writeFileSync(answers, "yes\n".repeat(20));
    const prelude = join(dir, "prelude.sh");
    writeFileSync(
      prelude,
      [
        "set -o pipefail",
        "curl() { command curl --fail-with-body \"$@\"; }",
        `__step() { local s; source "$1" < ${JSON.stringify(answers)} 3>&-; s=$?; shift`,
        '  local v; for v in "$@"; do if [ -z "${!v:-}" ] || [ "${!v}" = null ]; then printf "@@unset %s\\n" "$v" >&3; fi; done',
        '  printf "@@done %s %s\\n" "$s" "${!:-}" >&3; }',
        'printf "@@ready\\n" >&3',
        "",
      ].join("\n"),
    );
    const bash = spawn("unshare", ["--net", "--", "sh", "-c", 'ip link set lo up && exec bash --noprofile --norc', "sh"], {
      cwd,
      env,
      detached: true,
      stdio: ["pipe", "pipe", "pipe", "pipe"],
    });
    const shell = new Shell(bash, dir);
    bash.stdin!.write(`source ${JSON.stringify(prelude)}\n`);
    await until("the shell to start", 10_000, () => (shell.control.includes("@@ready") ? true : bash.exitCode !== null ? fail(shell.transcript) : undefined));
    for (const l of shell.listeners()) shell.known.add(key(l));
    return shell;
  }

  /** Runs `script` as the next step; `assigns` are the variables it must leave set. */
  async run(script: string, assigns: string[], boundMs: number): Promise<StepResult> {
    const n = ++this.stepNo;
    const file = join(this.dir, `step-${n}.sh`);
    writeFileSync(file, script + "\n");
    const from = this.transcript.length;
    this.control = "";
    this.bash.stdin!.write(`__step ${[file, ...assigns].map((a) => JSON.stringify(a)).join(" ")}\n`);

    let interrupted: Listener | undefined;
    let interruptedAt = 0;
    const deadline = Date.now() + boundMs;
    for (;;) {
      const done = /@@done (\d+) (\S*)/.exec(this.control);
      if (done) {
        const result: StepResult = {
          status: Number(done[1]),
          output: "",
          unsetVariables: [...this.control.matchAll(/@@unset (\S+)/g)].map((m) => m[1]!),
          interrupted,
        };
        if (done[2] && done[2] !== this.lastBackground) {
          this.lastBackground = done[2];
          result.background = await this.listenerOf(Number(done[2]));
        }
        result.output = this.transcript.slice(from);
        return result;
      }
      if (this.bash.exitCode !== null) throw new Error(`the shell exited (${this.bash.exitCode})`);
      if (Date.now() > deadline) throw new Error(`still running after ${boundMs / 1000} s`);
      if (interrupted === undefined) {
        // A new listener of the shell's while the step runs: a foreground server.
        const fresh = this.listeners().find((l) => !this.known.has(key(l)) && this.descends(l.pid, this.bash.pid!));
        if (fresh) {
          interrupted = fresh;
          interruptedAt = Date.now();
          process.kill(fresh.pid, "SIGINT");
        }
      } else if (Date.now() - interruptedAt > FOREGROUND_STOP_MS) {
        throw new Error(`the server it started (pid ${interrupted.pid}, ${interrupted.address}) did not stop within ${FOREGROUND_STOP_MS / 1000} s of SIGINT`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** Everything printed so far. */
  output(): string {
    return this.transcript;
  }

  /** Ends the shell and everything it started (its process group). */
  async close(): Promise<void> {
    const group = -this.bash.pid!;
    const signal = (s: NodeJS.Signals) => {
      try {
        process.kill(group, s);
      } catch {
        // the group is gone
      }
    };
    signal("SIGTERM");
    try {
      await until("the newcomer's processes to end", 10_000, () => (this.groupAlive() ? undefined : true));
    } catch {
      signal("SIGKILL");
    }
  }

  private async listenerOf(pid: number): Promise<Listener> {
    return until(`the background job (pid ${pid}) to listen on a TCP port`, BACKGROUND_LISTEN_MS, () => {
      const fresh = this.listeners().find((l) => !this.known.has(key(l)) && this.descends(l.pid, pid));
      if (fresh) {
        this.known.add(key(fresh));
        return fresh;
      }
      if (!alive(pid) && !this.listeners().some((l) => this.descends(l.pid, pid))) throw new Error(`the background job (pid ${pid}) exited before it listened`);
      return undefined;
    });
  }

  /** TCP listeners in the shell's network namespace. */
  private listeners(): Listener[] {
    if (this.bash.exitCode !== null) return [];
    const out = execFileSync("nsenter", ["-t", String(this.bash.pid), "-n", "ss", "-Hltnp"], { encoding: "utf8" });
    return out
      .split("\n")
      .flatMap((line) => [...line.matchAll(/pid=(\d+)/g)].map((m) => ({ pid: Number(m[1]), address: line.trim().split(/\s+/)[3] ?? "?", executable: executableOf(Number(m[1])) })));
  }

  private descends(pid: number, ancestor: number): boolean {
    const parents = parentsByPid();
    for (let p: number | undefined = pid; p !== undefined && p > 1; p = parents.get(p)) if (p === ancestor) return true;
    return false;
  }

  private groupAlive(): boolean {
    try {
      process.kill(-this.bash.pid!, 0);
      return true;
    } catch {
      return false;
    }
  }
}

const key = (l: Listener) => `${l.pid} ${l.address}`;

function alive(pid: number): boolean {
  try {
    // A zombie has exited; only its parent has not reaped it yet.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
}

function executableOf(pid: number): string {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return "?";
  }
}

function parentsByPid(): Map<number, number> {
  const parents = new Map<number, number>();
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, "utf8");
      parents.set(Number(name), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  return parents;
}

function fail(output: string): never {
  throw new Error(`the shell did not start:\n${output}`);
}
