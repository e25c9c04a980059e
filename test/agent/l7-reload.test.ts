// SPDX-License-Identifier: Apache-2.0
// The node's proxy across reloads (issue 21), with the real HAProxy the
// agent drives, from a hand-written document on loopback (no kernel): a
// caller past its burst stays refused after reloads forced by structural
// changes (the rate-limit tables go from each old worker to the new one
// through the local peer), while another caller keeps its own count; and
// that local peer listens nowhere but a socket in the agent's state
// directory that only root may open, so nothing else on the node, and
// nothing off it, can push table entries.
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { peersSocketPath } from "../../nodeagent/src/l7/traffic-render.ts";
import { backend, Callers, DocumentSource, freePort, loopbackDriverOptions, type Backend } from "../support/l7-loopback.ts";
import { untilHolds } from "../support/until.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();

const A = { address: "127.0.0.30", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/a" };
const B = { address: "127.0.0.31", tenant: "acme", spiffeId: "spiffe://acme.test/ns/shop/sa/b" };
/** 1 a second, burst 60: a 60 s window, far longer than the reloads take (a count exact within its first window). */
const RATE = { requestsPerSecond: 1, burst: 60 };

const callers = new Callers();
const call = callers.call.bind(callers);

/** The local addresses a process listens on over TCP (/proc: its socket inodes among the LISTEN entries). */
function tcpListeners(pid: number): string[] {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      // closed meanwhile
    }
  }
  const out: string[] = [];
  for (const table of ["tcp", "tcp6"]) {
    for (const line of readFileSync(`/proc/${pid}/net/${table}`, "utf8").split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== "0A" || !inodes.has(f[9]!)) continue;
      const [hex, port] = f[1]!.split(":");
      const address = table === "tcp" ? hex!.match(/../g)!.reverse().map((b) => parseInt(b, 16)).join(".") : hex!;
      out.push(`${address}:${parseInt(port!, 16)}`);
    }
  }
  return out.sort();
}

/** Whether a process of user nobody can connect to the unix socket `path`: its error code, or "connected". */
function connectAsNobody(path: string): Promise<string> {
  const script = `require("node:net").connect(${JSON.stringify(path)}).on("connect", () => { console.log("connected"); process.exit(0); }).on("error", (e) => { console.log(e.code); process.exit(0); });`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { uid: 65534, gid: 65534, stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString()));
    child.on("error", reject);
    child.on("exit", () => resolve(out.trim()));
  });
}

describe.skipIf(NO_HAPROXY)("the node's proxy across reloads (real HAProxy, loopback)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-reload-"));
  const registry = new Registry();
  const source = new DocumentSource();
  let driver: L7Driver;
  let ok: Backend;
  let rated: number, other: number, listen: number;

  /** `routes` rules on the rated service: each new count is a structural change (a reload). */
  const doc = (routes: number): L7Document => ({
    proxyAddress: "127.0.0.1",
    frontends: [
      {
        name: "f-rated",
        tenant: "acme",
        service: "rated",
        vip: "127.0.0.1",
        port: rated,
        rules: Array.from({ length: routes }, (_, i) => ({ route: `r${i}`, rule: 0, matches: [{ path: { type: "PathPrefix" as const, value: `/r${i}` } }], backends: [{ backend: "d-rated", weight: 1 }] })),
        defaultBackend: "d-rated",
        authorization: { governed: false, entries: [] },
        traffic: { policy: "rated-limits", rateLimit: RATE },
      },
      {
        name: "f-other",
        tenant: "acme",
        service: "other",
        vip: "127.0.0.1",
        port: other,
        rules: [],
        defaultBackend: "d-other",
        authorization: { governed: false, entries: [] },
        traffic: { policy: "other-limits", rateLimit: RATE },
      },
    ],
    backends: [
      { name: "d-rated", servers: [{ name: "ok", address: "127.0.0.1", port: ok.port, weight: 1 }] },
      { name: "d-other", servers: [{ name: "ok", address: "127.0.0.1", port: ok.port, weight: 1 }] },
    ],
    callers: [A, B],
  });

  const running = (etag = source.currentEtag) => untilHolds(`the proxy running ${etag}`, () => driver.status(), (s) => s.state === "running" && s.appliedEtag === etag, 30_000);

  /** Reloads HAProxy with `routes` rules and waits for a new worker serving them. */
  async function reload(routes: number): Promise<void> {
    const before = driver.pids!.worker;
    source.set(doc(routes));
    await running();
    expect(driver.pids!.worker).not.toBe(before);
    // The old worker's keep-alive connections are its own: the next calls reach the new one.
    callers.close();
  }

  beforeAll(async () => {
    ok = await backend(() => [200, "ok"]);
    [rated, other, listen] = [await freePort(), await freePort(), await freePort()];
    source.set(doc(0));
    driver = new L7Driver(
      loopbackDriverOptions({ binary: HAPROXY, stateDir, document: source.answer, registry, listen: { address: "127.0.0.1", port: listen }, extraBinds: [rated, other].map((p) => `127.0.0.1:${p}`) }),
    );
    driver.start();
    await running();
  }, 40_000);

  afterAll(async () => {
    callers.close();
    await driver?.stop();
    ok?.server.closeAllConnections();
    await new Promise((r) => ok?.server.close(r));
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("keeps refusing a caller past its burst after reloads a structural change forces, and keeps each caller's count its own", async () => {
    const first = [];
    for (let i = 0; i < RATE.burst; i++) first.push((await call(A, rated)).status);
    expect(first.every((s) => s === 200)).toBe(true);
    expect((await call(A, rated)).status).toBe(429);
    // B has used half its burst at the same service, and A none at the other.
    for (let i = 0; i < RATE.burst / 2; i++) expect((await call(B, rated)).status).toBe(200);

    // Two reloads, the second right after the first: each new worker learns the tables of the one before.
    await reload(1);
    await reload(2);

    const refused = await call(A, rated);
    expect(refused.status).toBe(429);
    expect(refused.type).toBe("application/problem+json");
    expect(refused.headers["retry-after"]).toBe(String(RATE.burst / RATE.requestsPerSecond));
    // B keeps the half it had left, no more; A is still served where it has no count.
    for (let i = 0; i < RATE.burst / 2; i++) expect((await call(B, rated)).status).toBe(200);
    expect((await call(B, rated)).status).toBe(429);
    expect((await call(A, other)).status).toBe(200);
  }, 90_000);

  it("listens for the local peer only on a unix socket in its state directory that only root may open", async () => {
    const path = peersSocketPath(stateDir);
    const st = statSync(path);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.uid).toBe(0);
    // No TCP listener beyond the frontend's: the peers protocol is not on the network at all.
    const { worker } = driver.pids!;
    expect(tcpListeners(worker)).toEqual([`127.0.0.1:${listen}`, `127.0.0.1:${rated}`, `127.0.0.1:${other}`].sort());
    // Even where the directory lets others through, the socket does not.
    chmodSync(stateDir, 0o711);
    try {
      expect(await connectAsNobody(path)).toBe("EACCES");
    } finally {
      chmodSync(stateDir, 0o700);
    }
  }, 30_000);
});
