// SPDX-License-Identifier: Apache-2.0
/**
 * Issue 20 (scale) against issue 21 (L7): a node that joins puts its proxy
 * address into the ipcache of the nodes hosting a tenant with httpRoutes,
 * and only those. Before, every node held every proxy address, so each
 * registration recompiled every tracked node: registering 10,000 nodes cost
 * 10,000 x 10,000 compiles.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { proxyAddressOf } from "../../api/src/compiler/index.ts";
import { bearer, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, freshVip, identity, mustPut } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

const sample = (text: string, series: string): number => Number(new RegExp(`^${series} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);

describe("a node joining, on PGlite", () => {
  let app: WeftApp;
  let t: { tenant: string; token: string };
  let home: Awaited<ReturnType<typeof registeredNode>>;
  const compiles = async () => sample((await app.inject("/metrics")).body, "weft_datapath_compile_seconds_count");
  /** The node's datapath, fetched: which also makes the follower track (and recompile) it. */
  const datapath = async (node: Awaited<ReturnType<typeof registeredNode>>) => {
    const res = await app.inject({ url: `/v1/nodes/${node.name}/datapath`, headers: bearer(node.credential) });
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as { maps: { ipcache: { key: { prefix: string }; value: { identity: number } }[] } };
  };
  const proxyEntries = async (node: Awaited<ReturnType<typeof registeredNode>>) =>
    (await datapath(node)).maps.ipcache.filter((e) => e.value.identity === 5).map((e) => e.key.prefix);

  beforeAll(async () => {
    app = await startApi("pglite");
    t = await tenantWithToken(app, ["write"]);
    home = await registeredNode(app);
    await identity(app, t.token, t.tenant, "api", { app: "api" });
    await mustPut(app, t.token, t.tenant, "workloads/api-1", { identity: "api", node: home.name, addresses: [freshAddress(home.podCidr)] });
    await mustPut(app, t.token, t.tenant, "services/api", {
      vip: freshVip(),
      ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }],
      backends: { selector: { labels: { app: "api" } } },
    });
  });
  afterAll(async () => app?.close());

  it("does not recompile a node whose tenants have no routes, nor change its datapath", async () => {
    const before = await datapath(home);
    const compiled = await compiles();
    const joined = await registeredNode(app);
    await datapath(joined);
    // Asked for, a reached node whose turn has not come is compiled at once: this one is not reached.
    expect(await datapath(home)).toEqual(before);
    // The joined node's own compile, not the home node's.
    expect((await compiles()) - compiled).toBe(1);
    expect(await proxyEntries(home)).toEqual([]);
  });

  it("reaches the nodes of a tenant with routes, which learn the new proxy address", async () => {
    await mustPut(app, t.token, t.tenant, "httpRoutes/all", { parentRefs: [{ name: "api" }], rules: [{ backendRefs: [{}] }] });
    const known = await proxyEntries(home);
    expect(known).toContain(`${proxyAddressOf(home.podCidr)}/32`);
    const joined = await registeredNode(app);
    await datapath(joined);
    expect(await proxyEntries(home)).toEqual([...known, `${proxyAddressOf(joined.podCidr)}/32`].sort((a, b) => ipOrder(a) - ipOrder(b)));
  });
});

const ipOrder = (prefix: string): number => prefix.split("/")[0]!.split(".").reduce((n, o) => n * 256 + Number(o), 0);
