/**
 * Undo stack for benchmarks that make kernel objects (namespaces, veths,
 * cgroups, pins) and start processes: every step runs even when one throws,
 * once, whether the run ends normally, fails, or is interrupted (SIGINT,
 * SIGTERM, SIGHUP). Steps run in reverse order of registration.
 *
 * Behind it, a janitor (janitor.mjs): a detached process that watches the
 * bench and, should the bench die without cleaning up (SIGKILL; `tsx` kills
 * a child that does not answer a relayed Ctrl-C within 60 ms, which a child
 * inside a synchronous call cannot), removes what the manifest names. Every
 * object is tracked there as it is made; a clean exit deletes the manifest
 * and the janitor exits with nothing to do.
 */
import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";

export interface Manifest {
  /** with the start time from /proc/PID/stat, so a pid reused by another process is never killed */
  pids: { pid: number; start: string }[];
  pinDirs: string[];
  netns: string[];
  veths: string[];
  cgroups: string[];
  /** mount points (bpffs, a bind-mounted cgroup subtree), unmounted after the cgroups and before the dirs */
  mounts: string[];
  dirs: string[];
}

const repoRoot = new URL("../../", import.meta.url).pathname;

export class BenchCleanup {
  private steps: { what: string; undo: () => void | Promise<void> }[] = [];
  private running: Promise<string[]> | null = null;
  private readonly manifest: Manifest = { pids: [], pinDirs: [], netns: [], veths: [], cgroups: [], mounts: [], dirs: [] };
  readonly manifestPath: string;
  /** `manifest` names the manifest, /tmp/<manifest>.json: one per stack (a bench has one). */
  constructor(manifest = `wbench-manifest-${process.pid}`) {
    this.manifestPath = `/tmp/${manifest}.json`;
  }
  private janitorStarted = false;
  /** Set once a signal started the cleanup: the main flow's errors after that are the teardown's echo. */
  interrupted = false;

  add(what: string, undo: () => void | Promise<void>): void {
    this.steps.push({ what, undo });
  }

  /** A process for the janitor, with its start time (field 22 of /proc/PID/stat). */
  trackPid(pid: number): void {
    let start = "";
    try {
      start = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")[19]!;
    } catch {
      return; // already gone
    }
    this.track("pids", { pid, start });
  }

  /** Records an object for the janitor (written at once: the bench may die on the next line). */
  track<K extends keyof Manifest>(kind: K, value: Manifest[K][number]): void {
    (this.manifest[kind] as (typeof value)[]).push(value);
    writeFileSync(this.manifestPath, JSON.stringify(this.manifest));
    if (!this.janitorStarted) {
      this.janitorStarted = true;
      const janitor = spawn(process.execPath, [new URL("./janitor.mjs", import.meta.url).pathname, String(process.pid), this.manifestPath, repoRoot], {
        detached: true,
        stdio: "ignore",
      });
      janitor.unref();
    }
  }

  /** Runs every step once; a second caller (a signal during the finally block) waits for the same run. */
  run(): Promise<string[]> {
    this.running ??= (async () => {
      const errors: string[] = [];
      // Steps added while running (none expected) are run by a later call.
      const steps = this.steps.splice(0).reverse();
      for (const { what, undo } of steps) {
        try {
          await undo();
        } catch (err) {
          errors.push(`${what}: ${(err as Error).message}`);
        }
      }
      // Everything is undone (or reported): nothing for the janitor.
      if (errors.length === 0) rmSync(this.manifestPath, { force: true });
      return errors;
    })();
    return this.running;
  }

  /**
   * On SIGINT/SIGTERM/SIGHUP: clean up, report, exit 130. Further signals
   * while cleaning are ignored (a terminal's Ctrl-C reaches the bench both
   * directly and relayed by npm/tsx). Children in the same process group
   * get the terminal's SIGINT too; the steps still stop and wait for each.
   */
  onSignals(name: string): void {
    let caught = false;
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
      process.on(sig, () => {
        if (caught) return;
        caught = true;
        this.interrupted = true;
        console.error(`${name}: ${sig}, cleaning up`);
        void this.run().then((errors) => {
          for (const e of errors) console.error(`${name}: cleanup: ${e}`);
          process.exit(130);
        });
      });
    }
  }
}

/** Runs `main` with a cleanup stack that is undone in all cases; exits non-zero on failure or a failed cleanup step. */
export async function withCleanup(name: string, main: (cleanup: BenchCleanup) => Promise<void>): Promise<void> {
  const cleanup = new BenchCleanup();
  cleanup.onSignals(name);
  let failed = false;
  try {
    await main(cleanup);
  } catch (err) {
    failed = true;
    if (!cleanup.interrupted) console.error(`${name}: ${(err as Error).stack ?? (err as Error).message}`);
  } finally {
    const errors = await cleanup.run();
    for (const e of errors) console.error(`${name}: cleanup: ${e}`);
    if (errors.length) failed = true;
  }
  process.exit(failed ? 1 : 0);
}
