// SPDX-License-Identifier: Apache-2.0
/**
 * One run of the transport process (src/transport/main.ts) and its control
 * channel, seen from the agent: spawned with the Node binary the agent runs
 * on, ready once it prints its ports, then one JSON
 * request a line on its stdin answered by one line on its stdout. Its stderr
 * goes to the agent's log. The channel is the pipe (see
 * src/transport/control-schema.ts for why); closing it ends the process.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { ControlAnswer, ControlRequest } from "../transport/control-schema.ts";
import type { Log } from "./agent.ts";

export const TRANSPORT_MAIN = join(import.meta.dirname, "../transport/main.ts");
/** Where `--import tsx` resolves from: the install's root (node_modules/tsx), whatever the agent's working directory. */
const INSTALL_ROOT = join(import.meta.dirname, "../../..");
/**
 * The transport's TypeScript is written to run as Node strips it (no
 * parameter properties, enums or namespaces: test/transport/strip-types.test.ts),
 * so on a Node that strips types it runs without tsx, whose loader would
 * cost the transport's start-up and memory for nothing; older ones use tsx.
 */
const TYPESCRIPT_LOADER: readonly string[] = (process.features as { typescript?: string | false }).typescript ? [] : ["--import", "tsx"];
/** Start-up (loading TypeScript, binding the ports) within this, or the run counts as failed. */
export const READY_TIMEOUT_MS = 30_000;
/** A control request unanswered this long fails (the process is stuck: the driver restarts it). */
export const REQUEST_TIMEOUT_MS = 10_000;

export type Request = ControlRequest extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never;

export class TransportExited extends Error {}

export class TransportProcess {
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly child: ChildProcess;
  private readonly waiting = new Map<number, { resolve: (a: ControlAnswer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private next = 1;
  private gone = false;

  private constructor(
    child: ChildProcess,
    readonly ports: { inbound: number; outbound: number },
    exited: TransportProcess["exited"],
  ) {
    this.child = child;
    this.exited = exited;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Spawns the transport with `args` and resolves once it is ready (its ports bound), or rejects with why it is not. */
  static start(args: readonly string[], log: Log): Promise<TransportProcess> {
    // A bounded young generation: V8 sizes it up under the transport's allocation rate (README, the engine's memory).
    const child = spawn(process.execPath, ["--max-semi-space-size=2", ...TYPESCRIPT_LOADER, TRANSPORT_MAIN, ...args], { cwd: INSTALL_ROOT, stdio: ["pipe", "pipe", "pipe"] });
    // A spawn that fails (no such binary) emits "error" and never "exit": it ends the run the same way.
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
      child.once("exit", (code, signal) => resolve({ code, signal }));
      child.once("error", (err) => {
        log("error", "failed to run the transport", { error: err.message });
        resolve({ code: null, signal: null });
      });
    });
    createInterface({ input: child.stderr! }).on("line", (line) => log("warn", "transport", { pid: child.pid, line: line.slice(0, 2048) }));
    // The agent's stop ends the pipe: a write racing the exit must not crash the agent.
    child.stdin!.on("error", () => undefined);
    return new Promise((resolve, reject) => {
      let running: TransportProcess | null = null;
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`the transport was not ready within ${READY_TIMEOUT_MS} ms`));
      }, READY_TIMEOUT_MS);
      createInterface({ input: child.stdout! }).on("line", (line) => {
        let msg: ControlAnswer & { ready?: boolean; inbound?: number; outbound?: number };
        try {
          msg = JSON.parse(line) as typeof msg;
        } catch {
          return log("warn", "transport wrote a line that is not JSON", { line: line.slice(0, 200) });
        }
        if (!running) {
          if (msg.ready !== true || typeof msg.inbound !== "number" || typeof msg.outbound !== "number") return;
          clearTimeout(timer);
          running = new TransportProcess(child, { inbound: msg.inbound, outbound: msg.outbound }, exited);
          return resolve(running);
        }
        running.answered(msg);
      });
      void exited.then(({ code, signal }) => {
        clearTimeout(timer);
        if (running) running.ended(`the transport exited (${signal ?? `code ${code}`})`);
        else reject(new TransportExited(`the transport exited before it was ready (${signal ?? `code ${code}`})`));
      });
    });
  }

  /** Sends one request; resolves with its answer, rejects when the process is gone or does not answer in time. */
  request(request: Request): Promise<ControlAnswer> {
    if (this.gone) return Promise.reject(new TransportExited("the transport is not running"));
    const id = this.next++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`the transport did not answer ${request.op} within ${REQUEST_TIMEOUT_MS} ms`));
      }, REQUEST_TIMEOUT_MS);
      this.waiting.set(id, { resolve, reject, timer });
      this.child.stdin!.write(`${JSON.stringify({ ...request, id })}\n`);
    });
  }

  /** Ends the process: closing its stdin asks it to exit; SIGKILL if it has not within `graceMs`. */
  async stop(graceMs = 2_000): Promise<void> {
    this.child.stdin!.end();
    const timer = setTimeout(() => this.child.kill("SIGKILL"), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  private answered(msg: ControlAnswer): void {
    const w = typeof msg.id === "number" ? this.waiting.get(msg.id) : undefined;
    if (!w) return;
    this.waiting.delete(msg.id!);
    clearTimeout(w.timer);
    w.resolve(msg);
  }

  private ended(why: string): void {
    this.gone = true;
    for (const w of this.waiting.values()) {
      clearTimeout(w.timer);
      w.reject(new TransportExited(why));
    }
    this.waiting.clear();
  }
}
