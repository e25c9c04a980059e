import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { lockPathOf } from "../../api/src/db/data-dir-lock.ts";
import { OPERATOR_TOKEN } from "../support/api.ts";
import { freePort } from "../support/api-process.ts";
import { until } from "../support/until.ts";

// `npm start` as a newcomer runs it: api/src/server.ts on the embedded
// database in a data directory, its stdout and stderr read apart.

interface Server {
  child: ChildProcess;
  base: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<number | null>;
}

const started: Server[] = [];
const homes: string[] = [];

afterEach(async () => {
  for (const s of started.splice(0)) {
    if (s.child.exitCode === null && s.child.signalCode === null) {
      s.child.kill("SIGKILL");
      await s.exited;
    }
  }
  for (const home of homes.splice(0)) rmSync(home, { recursive: true, force: true });
});

function dataDirInTempHome(): string {
  const home = mkdtempSync(join(tmpdir(), "weft-start-"));
  homes.push(home);
  return join(home, ".weft", "data");
}

async function start(dataDir: string, env: NodeJS.ProcessEnv = {}): Promise<Server> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", "api/src/server.ts"], {
    env: { ...process.env, PORT: String(port), DATABASE_URL: "", WEFT_DATA_DIR: dataDir, WEFT_CA_ROTATION: "off", WEFT_OPERATOR_TOKEN: "", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  let err = "";
  child.stdout!.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr!.on("data", (c: Buffer) => (err += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  const server = { child, base: `http://127.0.0.1:${port}`, stdout: () => out, stderr: () => err, exited };
  started.push(server);
  return server;
}

async function ready(server: Server): Promise<void> {
  await until(`${server.base}/readyz (output: ${server.stdout()}${server.stderr()})`, 60_000, async () => {
    if (server.child.exitCode !== null) throw new Error(`exited ${server.child.exitCode}: ${server.stderr()}`);
    try {
      return (await fetch(`${server.base}/readyz`)).status === 200 ? true : undefined;
    } catch {
      return undefined;
    }
  });
}

const jsonLines = (text: string) => text.split("\n").filter((l) => l.startsWith("{")).map((l) => JSON.parse(l) as Record<string, unknown>);

describe("the data directory lock (`npm start &` twice)", () => {
  it("refuses a second server on the same directory at once, with one line naming it and the first one's PID; the first keeps serving", async () => {
    const dataDir = dataDirInTempHome();
    const first = await start(dataDir, { WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, LOG_LEVEL: "warn" });
    await ready(first);
    expect(readFileSync(lockPathOf(dataDir), "utf8")).toBe(`${first.child.pid}\n`);

    const t0 = Date.now();
    const second = await start(dataDir, { WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, LOG_LEVEL: "warn" });
    const code = await second.exited;
    // Fast: before any database work (opening PGlite alone takes seconds here).
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(code).not.toBe(0);
    const lines = second.stderr().trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(dataDir);
    expect(lines[0]).toContain(`pid ${first.child.pid}`);
    expect(second.stdout()).toBe("");

    const tenants = await fetch(`${first.base}/v1/tenants`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
    expect(tenants.status).toBe(200);
    expect(readFileSync(lockPathOf(dataDir), "utf8")).toBe(`${first.child.pid}\n`);

    // A clean stop gives the directory back.
    first.child.kill("SIGTERM");
    expect(await first.exited).toBe(0);
    expect(existsSync(lockPathOf(dataDir))).toBe(false);
  }, 120_000);

  it("takes over a lock left by a process that no longer exists", async () => {
    const dataDir = dataDirInTempHome();
    // A PID that is surely dead: a child that has already exited.
    const gone = spawn(process.execPath, ["-e", ""]);
    await new Promise((r) => gone.once("exit", r));
    const first = await start(dataDir, { WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, LOG_LEVEL: "warn" });
    await ready(first);
    first.child.kill("SIGKILL"); // a crash: the lock file stays
    await first.exited;
    expect(existsSync(lockPathOf(dataDir))).toBe(true);
    writeFileSync(lockPathOf(dataDir), `${gone.pid}\n`);

    const next = await start(dataDir, { WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, LOG_LEVEL: "warn" });
    await ready(next);
    expect(readFileSync(lockPathOf(dataDir), "utf8")).toBe(`${next.child.pid}\n`);
  }, 120_000);
});

describe("the generated operator token", () => {
  it("is printed once, on its own lines on stderr with what to do with it, never in a log line, and authenticates", async () => {
    const dataDir = dataDirInTempHome();
    const server = await start(dataDir, { LOG_LEVEL: "info" });
    await ready(server);
    const match = /^ {4}(weft_op_[A-Za-z0-9_-]{43})$/m.exec(server.stderr());
    expect(match, server.stderr()).not.toBeNull();
    const token = match![1]!;
    expect(server.stderr()).toMatch(/shown this once/);
    expect(server.stderr()).toMatch(/authorization: Bearer/);
    expect(server.stderr().split(token)).toHaveLength(2);
    expect(server.stdout()).not.toContain(token);
    // stdout is all JSON log lines: the notice did not land inside one.
    for (const line of server.stdout().trim().split("\n")) expect(() => JSON.parse(line), line).not.toThrow();
    const tenants = await fetch(`${server.base}/v1/tenants`, { headers: { authorization: `Bearer ${token}` } });
    expect(tenants.status).toBe(200);

    // The next start keeps the hash and prints nothing.
    server.child.kill("SIGTERM");
    expect(await server.exited).toBe(0);
    const again = await start(dataDir, { LOG_LEVEL: "info" });
    await ready(again);
    expect(again.stderr()).not.toMatch(/weft_op_/);
    expect(again.stdout()).not.toMatch(/weft_op_/);
  }, 120_000);
});

describe("probe logging", () => {
  it("logs /healthz and /readyz requests at debug, other requests at info", async () => {
    const server = await start(dataDirInTempHome(), { WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, LOG_LEVEL: "debug" });
    await ready(server);
    // Only the lines of the three requests below: ready()'s own polls may have met a server not yet ready.
    const seenBefore = jsonLines(server.stdout()).length;
    await fetch(`${server.base}/healthz`);
    await fetch(`${server.base}/readyz`);
    await fetch(`${server.base}/v1/tenants`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
    const requestLines = () =>
      jsonLines(server.stdout())
        .slice(seenBefore)
        .filter((l) => l.msg === "incoming request" || l.msg === "request completed");
    const urlOf = (l: Record<string, unknown>) => (l.req as { url?: string } | undefined)?.url;
    const completed = (url: string) => {
      const incoming = requestLines().find((l) => l.msg === "incoming request" && urlOf(l) === url);
      return incoming !== undefined && requestLines().some((l) => l.msg === "request completed" && l.reqId === incoming.reqId);
    };
    await until("the three requests' log lines", 10_000, () => (["/healthz", "/readyz", "/v1/tenants"].every(completed) ? true : undefined));
    const byReq = new Map<unknown, string>();
    for (const l of requestLines()) if (urlOf(l)) byReq.set(l.reqId, urlOf(l)!);
    const levels = (url: string) => [...new Set(requestLines().filter((l) => byReq.get(l.reqId) === url).map((l) => l.level))];
    // pino: 20 is debug, 30 is info.
    expect(levels("/healthz")).toEqual([20]);
    expect(levels("/readyz")).toEqual([20]);
    expect(levels("/v1/tenants")).toEqual([30]);
  }, 120_000);

  it("at info, the default, probes leave no line while other requests do", async () => {
    const server = await start(dataDirInTempHome(), { WEFT_OPERATOR_TOKEN: OPERATOR_TOKEN, LOG_LEVEL: "info" });
    await ready(server);
    for (let i = 0; i < 3; i++) await fetch(`${server.base}/healthz`);
    await fetch(`${server.base}/v1/tenants`, { headers: { authorization: `Bearer ${OPERATOR_TOKEN}` } });
    await until("the /v1/tenants request's line", 10_000, () =>
      jsonLines(server.stdout()).some((l) => l.msg === "request completed") ? true : undefined,
    );
    const urls = jsonLines(server.stdout())
      .map((l) => (l.req as { url?: string } | undefined)?.url)
      .filter((u) => u !== undefined);
    expect(urls).toEqual(["/v1/tenants"]);
  }, 120_000);
});
