// SPDX-License-Identifier: Apache-2.0
/**
 * One run of HAProxy in master-worker mode, seen from the agent: the
 * master (`haproxy -W -S <master socket> -f <cfg> -p <pidfile>`) is the
 * agent's child; its stdout is the workers' access log (one JSON record a
 * line, render.ts), its stderr goes to the agent's log. A reload is
 * SIGUSR2 to the master: it starts new workers on the config file as it is
 * then, which take the listeners over (expose-fd listeners), and the old
 * ones finish their connections (hard-stop-after bounds them). Ready (and
 * reloaded) means the admin socket answers with a new worker's pid.
 *
 * Like the transport, HAProxy ends with the agent: stop() ends it, and a
 * master an earlier agent left behind (the pidfile names it, its command
 * line names our config) is ended before a new one starts, so two proxies
 * never share the port (HAProxy binds with SO_REUSEPORT).
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Log } from "../agent/agent.ts";
import { sleep } from "../agent/backoff.ts";
import { workerPid } from "./runtime-api.ts";

/** A master and its first worker answering within this, or the run failed. */
export const READY_TIMEOUT_MS = 15_000;
/** A reload's new worker answering within this, or the reload failed. */
export const RELOAD_TIMEOUT_MS = 15_000;

export interface HaproxyPaths {
  binary: string;
  config: string;
  masterSocket: string;
  adminSocket: string;
  pidFile: string;
}

export type Exit = { code: number | null; signal: NodeJS.Signals | null };

/** `haproxy -c`: null when the config is valid, else HAProxy's reasons. Asynchronous: a check takes tens of milliseconds the agent's loop need not wait. */
export function checkConfig(binary: string, config: string): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(binary, ["-c", "-f", config], { encoding: "utf8", timeout: 30_000 }, (err, stdout, stderr) => {
      if (!err) return resolve(null);
      const alerts = `${stdout}${stderr}`
        .split("\n")
        .filter((l) => l.includes("[ALERT]"))
        .map((l) => l.replace(/^\[ALERT\]\s*\(\d+\)\s*:\s*/, ""));
      resolve(alerts.join("; ").slice(0, 900) || `failed to run ${binary} -c: ${err.message}`);
    });
  });
}

/** Ends the master an earlier agent left running on this config, if any. */
export async function endLeftover(paths: HaproxyPaths, log: Log): Promise<void> {
  let pid: number;
  try {
    pid = Number(readFileSync(paths.pidFile, "utf8").trim());
  } catch {
    return;
  }
  if (!Number.isInteger(pid) || pid <= 1) return;
  let cmdline: string;
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  } catch {
    return; // gone
  }
  if (!cmdline.split("\0").includes(paths.config)) return; // the pid was reused by something else
  log("warn", "ending the L7 proxy an earlier agent left running", { pid });
  process.kill(pid, "SIGTERM");
  for (let i = 0; i < 50; i++) {
    await sleep(100);
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
  }
  process.kill(pid, "SIGKILL");
}

export class HaproxyProcess {
  readonly exited: Promise<Exit>;
  private constructor(
    private readonly child: ChildProcess,
    private readonly paths: HaproxyPaths,
    exited: Promise<Exit>,
    /** The worker serving now. */
    public workerPid: number,
  ) {
    this.exited = exited;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Starts the master on the config file and resolves once a worker answers on the admin socket. */
  static async start(paths: HaproxyPaths, onRecord: (line: string) => void, log: Log): Promise<HaproxyProcess> {
    rmSync(paths.adminSocket, { force: true });
    rmSync(paths.masterSocket, { force: true });
    const child = spawn(paths.binary, ["-W", "-S", `${paths.masterSocket},mode,600`, "-f", paths.config, "-p", paths.pidFile], { stdio: ["ignore", "pipe", "pipe"] });
    const exited = new Promise<Exit>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (err) => {
        log("error", "failed to run haproxy", { error: err.message });
        resolve({ code: null, signal: null });
      });
    });
    createInterface({ input: child.stdout! }).on("line", onRecord);
    createInterface({ input: child.stderr! }).on("line", (line) => log("warn", "haproxy", { pid: child.pid, line: line.slice(0, 2048) }));
    let gone: Exit | null = null;
    void exited.then((e) => (gone = e));
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (Date.now() < deadline) {
      if (gone) throw new Error(`haproxy exited before it was ready (${describeExit(gone)})`);
      try {
        return new HaproxyProcess(child, paths, exited, await workerPid(paths.adminSocket));
      } catch {
        await sleep(50);
      }
    }
    child.kill("SIGKILL");
    await exited;
    throw new Error(`haproxy was not ready within ${READY_TIMEOUT_MS} ms`);
  }

  /** Hitless reload on the config file as it is now; resolves once a new worker serves. */
  async reload(): Promise<void> {
    const before = this.workerPid;
    this.child.kill("SIGUSR2");
    const deadline = Date.now() + RELOAD_TIMEOUT_MS;
    while (Date.now() < deadline) {
      await sleep(50);
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error("haproxy exited during a reload");
      try {
        const pid = await workerPid(this.paths.adminSocket);
        if (pid !== before) {
          this.workerPid = pid;
          return;
        }
      } catch {
        // The new worker is taking the socket over.
      }
    }
    throw new Error(`haproxy did not reload within ${RELOAD_TIMEOUT_MS} ms (still worker ${before})`);
  }

  /** Ends master and workers: SIGTERM, SIGKILL after graceMs. */
  async stop(graceMs = 3_000): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGTERM");
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}

export const describeExit = (e: Exit) => (e.signal ? `signal ${e.signal}` : `code ${e.code}`);
