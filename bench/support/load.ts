import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export interface LoadResult {
  tool: string;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx3xx: number;
  /** Responses wrk completed, and over how long (wrk runs only). */
  requests?: number;
  seconds?: number;
  /** wrk's "Socket errors" line, if it printed one. */
  socketErrors?: string;
}

const hasWrk = (() => {
  try {
    execFileSync("wrk", ["--version"], { stdio: "ignore" });
    return true;
  } catch (err) {
    // wrk --version exits 1 after printing its version.
    return (err as { status?: number }).status === 1;
  }
})();

function msFrom(value: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(value.trim());
  if (!m) throw new Error(`cannot read wrk latency "${value}"`);
  const n = Number(m[1]);
  return m[2] === "us" ? n / 1000 : m[2] === "s" ? n * 1000 : n;
}

/** Lua for wrk: adds the request headers; wrk's -H would work too but quoting is fragile. */
function wrkScript(headers: Record<string, string>): string {
  const lines = Object.entries(headers).map(([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`);
  return lines.join("\n");
}

/**
 * Drives one URL with a fixed number of connections for a fixed time with
 * wrk: a C load generator steals less CPU from the server under test than a
 * Node one would on a two-core machine.
 */
export async function drive(
  url: string,
  headers: Record<string, string>,
  opts: { connections: number; seconds: number; threads?: number; exec?: string[] },
): Promise<LoadResult> {
  return driveScript(url, wrkScript(headers), opts);
}

/**
 * wrk with a Lua script of the caller's (wrk.format/request() to vary the
 * requests, response() to stop after a count); one wrk thread unless told.
 */
export async function driveScript(
  url: string,
  script: string,
  opts: {
    connections: number;
    seconds: number;
    threads?: number;
    timeoutSeconds?: number;
    /** argv wrk runs under, e.g. ["ip", "netns", "exec", ns] to load from inside a network namespace. */
    exec?: string[];
  },
): Promise<LoadResult> {
  if (hasWrk) {
    const { writeFileSync, mkdtempSync, rmSync } = await import("node:fs");
    const dir = mkdtempSync("/tmp/weft-bench-");
    const file = `${dir}/script.lua`;
    writeFileSync(file, script);
    let out: string;
    try {
      const [command, ...prefix] = [...(opts.exec ?? []), "wrk"];
      // Asynchronous, so the caller's event loop (signal handlers, child output) keeps running while wrk does.
      ({ stdout: out } = await execFileAsync(
        command!,
        [
          ...prefix,
          `-t${opts.threads ?? 1}`,
          `-c${opts.connections}`,
          `-d${opts.seconds}s`,
          ...(opts.timeoutSeconds ? [`--timeout`, `${opts.timeoutSeconds}s`] : []),
          "--latency",
          "-s",
          file,
          url,
        ],
        { encoding: "utf8", maxBuffer: 16 << 20 },
      ));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const rps = /Requests\/sec:\s+([\d.]+)/.exec(out)?.[1];
    const p50 = /^\s+50%\s+(\S+)/m.exec(out)?.[1];
    const p99 = /^\s+99%\s+(\S+)/m.exec(out)?.[1];
    const bad = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1];
    const total = /(\d+) requests in ([\d.]+)(ms|s|m)/.exec(out);
    const errors = /Socket errors:.*/.exec(out)?.[0];
    if (!rps || !p50 || !p99 || !total) throw new Error(`cannot read wrk output:\n${out}`);
    const scale = total[3] === "ms" ? 1 / 1000 : total[3] === "m" ? 60 : 1;
    return {
      tool: "wrk",
      requestsPerSecond: Number(rps),
      p50Ms: msFrom(p50),
      p99Ms: msFrom(p99),
      non2xx3xx: Number(bad ?? 0),
      requests: Number(total[1]),
      seconds: Number(total[2]) * scale,
      ...(errors !== undefined && { socketErrors: errors }),
    };
  }
  throw new Error("wrk is not installed: apt-get install wrk (benchmarks need a load generator that is not Node)");
}

/** Starts a Node child that prints one JSON line when ready; resolves to that line and the process. */
export async function startChild<T>(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  nodeArgs: string[] = [],
): Promise<{ child: ChildProcess; ready: T; nextLine: () => Promise<string | null> }> {
  const child = spawn(process.execPath, [...nodeArgs, "--import", "tsx", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
    env: { ...process.env, ...env },
  });
  const lines = createInterface({ input: child.stdout! });
  // Every line in order: the first is the ready line; children may report more
  // later (nextLine: null once stdout closed).
  const queued: string[] = [];
  const waiting: ((line: string | null) => void)[] = [];
  let closed = false;
  lines.on("line", (line) => (waiting.length ? waiting.shift()!(line) : queued.push(line)));
  lines.once("close", () => {
    closed = true;
    for (const w of waiting.splice(0)) w(null);
  });
  const nextLine = () =>
    queued.length ? Promise.resolve(queued.shift()!) : closed ? Promise.resolve(null) : new Promise<string | null>((r) => waiting.push(r));
  const ready = await new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${args.join(" ")} did not start in 60 s`)), 60_000);
    child.once("exit", (code) => reject(new Error(`${args.join(" ")} exited with ${code}`)));
    void nextLine().then((line) => {
      clearTimeout(timer);
      if (line === null) return reject(new Error(`${args.join(" ")} closed its output before it was ready`));
      resolve(JSON.parse(line) as T);
    });
  });
  return { child, ready, nextLine };
}

export function stopChild(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once("exit", () => resolve());
    child.kill("SIGTERM");
  });
}

export function table(rows: (string | number)[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  return rows.map((r) => r.map((c, i) => String(c).padEnd(widths[i]!)).join("  ")).join("\n");
}
