/**
 * bench/scale's API replicas: separate processes (api/src/server.ts) on one
 * Postgres, each connecting under its own application_name, and what the
 * bench reads of each from the outside (/proc, /proc/net/tcp, /metrics).
 */
import { randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { startApiProcess, type ApiProcess } from "../../test/support/api-process.ts";
import { urlNamed } from "./postgres.ts";

export interface Replica {
  index: number;
  api: ApiProcess;
  port: number;
  pid: number;
  applicationName: string;
}

/**
 * Starts `count` replicas in turn (the migration lock would serialise them
 * anyway); `onStarted` hears each at once, so that cleanup can stop it even
 * if a later one fails to start.
 */
export async function startReplicas(count: number, databaseUrl: string, operatorToken: string, onStarted: (r: Replica) => void): Promise<Replica[]> {
  // One KEK for all: tokens and CA keys sealed by one replica must open on the others.
  const kek = randomBytes(32).toString("hex");
  const replicas: Replica[] = [];
  for (let index = 0; index < count; index++) {
    const applicationName = `weft-scale-r${index}`;
    const api = await startApiProcess({
      WEFT_OPERATOR_TOKEN: operatorToken,
      DATABASE_URL: urlNamed(databaseUrl, applicationName),
      WEFT_KEK: kek,
      // The bench's pollers send no status reports: without this every node would be marked unreachable after 15 s.
      WEFT_NODE_GRACE_SECONDS: "0",
      LOG_LEVEL: "error",
    });
    const replica = { index, api, port: Number(new URL(api.base).port), pid: api.child.pid!, applicationName };
    onStarted(replica);
    replicas.push(replica);
  }
  return replicas;
}

export const alive = (r: Replica) => r.api.child.exitCode === null && r.api.child.signalCode === null;

export function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? Number.NaN) * 1024;
}

/** CPU seconds the process has used, user and system (fields 14 and 15 of /proc/PID/stat, in clock ticks of 1/100 s). */
export function cpuSeconds(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12])) / 100;
}

/**
 * CPU seconds of a process and its children (a postmaster and its backends),
 * from /proc: its own, its living children's, and those of the children it
 * has reaped (fields 16 and 17), so a backend that exits does not take its
 * time with it.
 */
export function treeCpuSeconds(root: number): number {
  let total = 0;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const f = readFileSync(`/proc/${entry}/stat`, "utf8").split(") ")[1]!.split(" ");
      // f[1] is the parent's pid (field 4); f[11..14] utime, stime, cutime, cstime (fields 14 – 17).
      if (Number(entry) === root) total += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
      else if (Number(f[1]) === root) total += (Number(f[11]) + Number(f[12])) / 100;
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

export const openFds = (pid: number) => readdirSync(`/proc/${pid}/fd`).length;

/** Established TCP connections whose local port is each of `ports` (the server's side of each client connection). */
export function establishedTo(ports: number[]): Map<number, number> {
  const counts = new Map(ports.map((p) => [p, 0]));
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // f[1] local address "HEX:PORT", f[3] state, 01 = ESTABLISHED.
      if (f[3] !== "01") continue;
      const port = parseInt(f[1]!.split(":")[1]!, 16);
      const n = counts.get(port);
      if (n !== undefined) counts.set(port, n + 1);
    }
  }
  return counts;
}

/** The worst event-loop delay since the previous scrape of the replica's /metrics (api/src/plugins/event-loop.ts). */
export async function eventLoopMaxSeconds(r: Replica): Promise<number> {
  const text = await (await fetch(`${r.api.base}/metrics`)).text();
  return Number(/^weft_event_loop_delay_max_seconds (\S+)$/m.exec(text)?.[1] ?? Number.NaN);
}
