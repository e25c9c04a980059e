// SPDX-License-Identifier: Apache-2.0
/**
 * L7 authorization across backends governed by different policies (real
 * HAProxy, loopback). The proxy decides a request before it picks the
 * backend, so a 90/10 canary between v1 (its policy: web may GET) and v2
 * (its policy: web may POST) must refuse both: a GET admitted by v1's
 * policy alone could land on v2. Before the document carried groups, the
 * allow entries were one union, and such a GET reached v2.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Registry } from "prom-client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { L7Document } from "../../nodeagent/src/l7/document.ts";
import { L7Driver } from "../../nodeagent/src/l7/driver.ts";
import { backend, Callers, DocumentSource, freePort, loopbackDriverOptions, type Backend } from "../support/l7-loopback.ts";
import { untilHolds } from "../support/until.ts";
import { haproxy } from "../support/prerequisites.ts";

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();
const WEB = { address: "127.0.0.20", tenant: "acme", spiffeId: "spiffe://acme.test/web" };

describe.skipIf(NO_HAPROXY)("L7 authorization over backends with different policies (real HAProxy, loopback)", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "weft-l7-groups-"));
  const source = new DocumentSource();
  const callers = new Callers();
  const hits = { v1: 0, v2: 0 };
  let driver: L7Driver;
  let v1: Backend;
  let v2: Backend;
  let port: number;

  /** v1's policy admits web's GETs, v2's web's POSTs; `grouped`: as the compiler writes it now, else the old union. */
  const doc = (grouped: boolean): L7Document => ({
    proxyAddress: "127.0.0.1",
    frontends: [
      {
        name: "f-api",
        tenant: "acme",
        service: "api",
        vip: "127.0.0.1",
        port,
        rules: [{ route: "canary", rule: 0, matches: [], backends: [{ backend: "b-v1", weight: 90 }, { backend: "b-v2", weight: 10 }] }],
        defaultBackend: "d-api",
        authorization: {
          governed: true,
          entries: [
            { action: "allow", sources: [WEB.spiffeId], methods: ["GET"], policy: "v1-in", rule: 0, ...(grouped ? { groups: [0] } : {}) },
            { action: "allow", sources: [WEB.spiffeId], methods: ["POST"], policy: "v2-in", rule: 0, ...(grouped ? { groups: [1] } : {}) },
          ],
          ...(grouped ? { groups: [{ subjects: ["spiffe://acme.test/api/v1"] }, { subjects: ["spiffe://acme.test/api/v2"] }] } : {}),
        },
      },
    ],
    backends: [
      { name: "b-v1", servers: [{ name: "v1", address: "127.0.0.1", port: v1.port, weight: 1 }] },
      { name: "b-v2", servers: [{ name: "v2", address: "127.0.0.1", port: v2.port, weight: 1 }] },
      {
        name: "d-api",
        servers: [
          { name: "v1", address: "127.0.0.1", port: v1.port, weight: 1 },
          { name: "v2", address: "127.0.0.1", port: v2.port, weight: 1 },
        ],
      },
    ],
    callers: [WEB],
  });

  const running = () => untilHolds("the proxy running the document", () => driver.status(), (s) => s.state === "running" && s.appliedEtag === source.currentEtag, 20_000);
  const send = async (method: string, n: number) => {
    const statuses: number[] = [];
    for (let i = 0; i < n; i++) statuses.push((await callers.call(WEB, port, { method, path: "/items" })).status);
    return statuses;
  };

  beforeAll(async () => {
    v1 = await backend(() => {
      hits.v1++;
      return [200, "v1"];
    });
    v2 = await backend(() => {
      hits.v2++;
      return [200, "v2"];
    });
    port = await freePort();
    source.set(doc(false));
    driver = new L7Driver(loopbackDriverOptions({ binary: HAPROXY, stateDir, document: source.answer, registry: new Registry(), listen: { address: "127.0.0.1", port: await freePort() }, extraBinds: [`127.0.0.1:${port}`] }));
    driver.start();
    await running();
  }, 30_000);

  afterAll(async () => {
    callers.close();
    await driver?.stop();
    for (const b of [v1, v2]) {
      b?.server.closeAllConnections();
      await new Promise((r) => b?.server.close(r));
    }
    rmSync(stateDir, { recursive: true, force: true });
  });

  it("as one union (the document of before), a GET only v1's policy admits reaches v2", async () => {
    hits.v1 = hits.v2 = 0;
    const statuses = await send("GET", 100);
    expect(statuses.every((s) => s === 200)).toBe(true);
    expect(hits.v2).toBeGreaterThan(0);
  });

  it("with groups, a request one backend's policy does not admit is refused before any backend is picked", async () => {
    source.set(doc(true));
    await running();
    // A kept-alive connection gets one more answer from the old worker after a reload: start afresh.
    callers.close();
    hits.v1 = hits.v2 = 0;
    const gets = await send("GET", 50);
    const posts = await send("POST", 50);
    expect(new Set([...gets, ...posts])).toEqual(new Set([403]));
    expect(hits).toEqual({ v1: 0, v2: 0 });
    const refused = await callers.call(WEB, port, { path: "/items" });
    expect(refused.type).toBe("application/problem+json");
    expect(JSON.parse(refused.body)).toMatchObject({ status: 403, detail: "no policy allows this request to acme/api" });
  });
});
