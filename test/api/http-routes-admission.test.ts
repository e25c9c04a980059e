import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { bearer, startApi, tenantWithToken } from "../support/api.ts";
import { freshAddress, identity, mustPut, putResource } from "../support/mesh.ts";
import { registeredNode } from "../support/nodes.ts";

describe("httpRoutes written through the API reach the compiler and its admission", () => {
  let app: WeftApp;
  let a: { tenant: string; token: string };
  let node: { name: string; credential: string; podCidr: string };
  beforeAll(async () => {
    app = await startApi("pglite", { mapCapacity: { l7: 1 } });
    a = await tenantWithToken(app, ["admin"]);
    node = await registeredNode(app);
    await identity(app, a.token, a.tenant, "web", { app: "web" });
    await mustPut(app, a.token, a.tenant, "workloads/w1", { identity: "web", node: node.name, addresses: [freshAddress(node.podCidr)] });
    await mustPut(app, a.token, a.tenant, "services/web", { ports: [{ port: 80, protocol: "tcp", targetPort: 8080 }, { port: 81, protocol: "tcp", targetPort: 8081 }], backends: { selector: { identity: "web" } } });
  });
  afterAll(async () => app?.close());

  it("a route put changes the node's L7 document; a second frontend over the l7 capacity is refused 422", async () => {
    const before = await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers: bearer(node.credential) });
    expect(before.json().frontends).toEqual([]);
    const put = await putResource(app, a.token, a.tenant, "httpRoutes/r1", { parentRefs: [{ name: "web", port: 80 }], rules: [{ backendRefs: [{}], timeouts: { request: "2s", backendRequest: "0s" } }] });
    expect(put.statusCode, put.body).toBe(201);
    const after = await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers: bearer(node.credential) });
    expect(after.json().frontends.map((f: { port: number }) => f.port)).toEqual([80]);
    const over = await putResource(app, a.token, a.tenant, "httpRoutes/r2", { parentRefs: [{ name: "web", port: 81 }], rules: [{ backendRefs: [{}] }] });
    expect(over.statusCode, over.body).toBe(422);
    expect(over.json().errors[0].field).toBe("maps.l7");
    const del = await app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/httpRoutes/r1`, headers: bearer(a.token) });
    expect(del.statusCode).toBe(204);
    const gone = await app.inject({ url: `/v1/nodes/${node.name}/l7`, headers: bearer(node.credential) });
    expect(gone.json().frontends).toEqual([]);
  });
});
