/**
 * The driver's side of bench/scale's client processes: starts them, splits
 * the fleet among them, and merges what they report.
 */
import { fork, type ChildProcess } from "node:child_process";
import type { Collected, NodeSpec, NodeView, PollerReply, PollerRequest, PollMode } from "./protocol.ts";

type Op = PollerRequest extends infer R ? (R extends { id: number } ? Omit<R, "id"> : never) : never;

class PollerProcess {
  private next = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  output = "";

  constructor(readonly child: ChildProcess) {
    child.on("message", (msg: PollerReply) => {
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.error !== undefined) p.reject(new Error(`poller ${child.pid}: ${msg.error}`));
      else p.resolve(msg.result);
    });
    child.stderr?.on("data", (c: Buffer) => (this.output = (this.output + c.toString()).slice(-4096)));
    child.on("exit", (code, signal) => {
      for (const p of this.pending.values()) p.reject(new Error(`poller ${child.pid} exited (${code ?? signal}): ${this.output}`));
      this.pending.clear();
    });
  }

  ask<T>(op: Op): Promise<T> {
    const id = this.next++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ ...op, id });
    });
  }
}

export class Pollers {
  private constructor(private readonly procs: PollerProcess[]) {}

  /** `count` client processes; `onPid` hears each pid at once, so cleanup can track it before anything else can fail. */
  static start(count: number, onPid: (pid: number) => void): Pollers {
    const script = new URL("./poller.ts", import.meta.url).pathname;
    const procs = Array.from({ length: count }, () => {
      const child = fork(script, [], { execArgv: ["--import", "tsx"], stdio: ["ignore", "ignore", "pipe", "ipc"] });
      onPid(child.pid!);
      return new PollerProcess(child);
    });
    return new Pollers(procs);
  }

  get pids(): number[] {
    return this.procs.map((p) => p.child.pid!);
  }

  private all<T>(op: Op): Promise<T[]> {
    return Promise.all(this.procs.map((p) => p.ask<T>(op)));
  }

  /** Every node's first full fetch (from its home replica); answers the slowest process's time. */
  async fetch(endpoints: string[], waitSeconds: number, nodes: NodeSpec[]): Promise<number> {
    const shares = this.procs.map((_, i) => nodes.filter((_, j) => j % this.procs.length === i));
    const times = await Promise.all(this.procs.map((p, i) => p.ask<{ ms: number }>({ op: "fetch", endpoints, waitSeconds, nodes: shares[i]! })));
    return Math.max(...times.map((t) => t.ms));
  }

  async hold(): Promise<void> {
    await this.all({ op: "hold" });
  }

  async view(): Promise<NodeView[]> {
    return (await this.all<NodeView[]>({ op: "view" })).flat();
  }

  async collect(): Promise<Collected> {
    const parts = await this.all<Collected>({ op: "collect" });
    return { answers: parts.flatMap((p) => p.answers), failovers: parts.flatMap((p) => p.failovers), errors: parts.flatMap((p) => p.errors) };
  }

  async mode(nodes: number[], mode: PollMode): Promise<void> {
    await this.all({ op: "mode", nodes, mode });
  }

  async report(intervalMs: number): Promise<void> {
    await this.all({ op: "report", intervalMs });
  }

  async reports(): Promise<number[]> {
    return (await this.all<number[]>({ op: "reports" })).flat();
  }

  /** Stops polling and ends the processes (bounded: a process that does not go in 5 s is killed). */
  async stop(): Promise<void> {
    await Promise.all(
      this.procs.map(async (p) => {
        if (p.child.exitCode !== null || p.child.signalCode !== null) return;
        const gone = new Promise((r) => p.child.once("exit", r));
        await Promise.race([p.ask({ op: "stop" }).catch(() => undefined), new Promise((r) => setTimeout(r, 5000))]);
        p.child.disconnect();
        const timer = setTimeout(() => p.child.kill("SIGKILL"), 5000);
        await gone;
        clearTimeout(timer);
      }),
    );
  }
}
