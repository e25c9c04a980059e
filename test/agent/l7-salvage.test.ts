// SPDX-License-Identifier: Apache-2.0
// A document one frontend spoils (a row stored before the API checked it):
// the agent serves every other frontend and names the one it left out,
// instead of refusing the whole document and freezing every tenant's L7
// state (nodeagent/src/l7/salvage.ts). What no single frontend owns still
// refuses the whole document.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { checkL7Document, type L7Document } from "../../nodeagent/src/l7/document.ts";
import { checkConfig } from "../../nodeagent/src/l7/haproxy-process.ts";
import { proxyErrorFiles } from "../../nodeagent/src/l7/proxy-errors.ts";
import { renderCallersMap, renderConfig } from "../../nodeagent/src/l7/render.ts";
import { salvageL7Document } from "../../nodeagent/src/l7/salvage.ts";
import { haproxy } from "../support/prerequisites.ts";
import { INTRUDER, richDocument } from "./l7-fixtures.ts";

/** richDocument plus a frontend of another tenant, globex's, with a backend of its own. */
function twoTenants(): L7Document {
  const d = richDocument();
  d.frontends.push({
    name: "f-3-80",
    tenant: "globex",
    service: "shop",
    vip: "198.19.0.12",
    port: 80,
    rules: [{ route: "r", rule: 0, matches: [{ path: { type: "PathPrefix", value: "/" } }], backends: [{ backend: "b-3-0-0", weight: 1 }] }],
    defaultBackend: "d-3-80",
    authorization: { governed: true, entries: [{ action: "allow", sources: [INTRUDER.spiffeId], policy: "shop-in", rule: 0 }] },
  });
  d.backends.push(
    { name: "b-3-0-0", servers: [{ name: "w-41", address: "198.18.1.41", port: 80, weight: 1 }] },
    { name: "d-3-80", servers: [{ name: "w-41", address: "198.18.1.41", port: 80, weight: 1 }] },
  );
  return d;
}

const { binary: HAPROXY, skip: NO_HAPROXY } = haproxy();

describe("an L7 document one frontend spoils", () => {
  it("a clean document is served whole", () => {
    expect(salvageL7Document(twoTenants())).toEqual({ document: twoTenants(), refused: [] });
  });

  it("an empty header value in globex's backend: acme's frontends are served, globex's is left out and named", () => {
    const d = twoTenants();
    d.backends[6]!.requestHeaders = { set: [{ name: "x-old", value: "" }] };
    expect(typeof checkL7Document(d)).toBe("string");
    const salvaged = salvageL7Document(d);
    if (typeof salvaged === "string") throw new Error(salvaged);
    expect(salvaged.document).toEqual(richDocument());
    expect(salvaged.refused).toEqual([{ frontend: "f-3-80", tenant: "globex", reason: expect.stringMatching(/^\/backends\/6\/requestHeaders\/set\/0\/value/) }]);
  });

  it("a JWT claim value the proxy cannot quote leaves out only the frontend whose rule names it", () => {
    const d = twoTenants();
    d.frontends[0]!.authorization.entries.push({ action: "allow", jwt: { trustDomain: "acme.test", audiences: ["api"], claims: [{ name: "role", values: ["a\nacl x always_true"] }] }, policy: "api-in", rule: 3 });
    const salvaged = salvageL7Document(d);
    if (typeof salvaged === "string") throw new Error(salvaged);
    expect(salvaged.refused.map((r) => [r.frontend, r.tenant])).toEqual([["f-1-80", "acme"]]);
    expect(salvaged.refused[0]!.reason).toMatch(/^\/frontends\/0\/authorization\/entries\/3\/jwt\/claims\/0\/values\/0/);
    expect(salvaged.document.frontends.map((f) => f.name)).toEqual(["f-2-8080", "f-3-80"]);
    // Only the kept frontends' backends: none of f-1-80's is left to serve a request the rule was meant to decide.
    expect(salvaged.document.backends.map((b) => b.name)).toEqual(["d-2-8080", "b-3-0-0", "d-3-80"]);
  });

  it("what no frontend owns refuses the whole document, as before", () => {
    const brokenCaller = twoTenants();
    brokenCaller.callers[0]!.spiffeId = "spiffe://acme.test/a\n10.0.0.1 acme|spiffe://acme.test/admin";
    const clash = twoTenants();
    clash.frontends[2]!.name = "f-1-80";
    const unknownMember = Object.assign(twoTenants(), { extra: 1 });
    for (const d of [brokenCaller, clash, unknownMember, null, { frontends: "x" }]) {
      expect(typeof salvageL7Document(d)).toBe("string");
    }
  });

  it.skipIf(NO_HAPROXY)("the salvaged document renders a config HAProxy takes", async () => {
    const d = twoTenants();
    d.backends[6]!.requestHeaders = { set: [{ name: "x-old", value: "" }] };
    const salvaged = salvageL7Document(d);
    if (typeof salvaged === "string") throw new Error(salvaged);
    const dir = mkdtempSync(join(tmpdir(), "weft-l7-salvage-"));
    try {
      const callersMap = join(dir, "callers.map");
      writeFileSync(callersMap, renderCallersMap(salvaged.document));
      for (const e of proxyErrorFiles(dir)) writeFileSync(e.path, e.content);
      const cfg = join(dir, "haproxy.cfg");
      writeFileSync(cfg, renderConfig(salvaged.document, { stateDir: dir, callersMap }));
      expect(await checkConfig(HAPROXY, cfg)).toBeNull();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
