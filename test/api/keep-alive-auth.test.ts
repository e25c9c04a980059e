import { Agent, request } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, bearer, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";

// The guard remembers the token a connection last authenticated with (auth/guard.ts).
// inject() makes a new socket per request, so these tests go over one real
// keep-alive connection, where that memory is used.
describe.each(BACKENDS)("tokens on one keep-alive connection on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let agent: Agent;
    let connections = 0;
    beforeAll(async () => {
      app = await startApi(backend);
      app.server.on("connection", () => connections++);
      await app.listen({ port: 0, host: "127.0.0.1" });
      agent = new Agent({ keepAlive: true, maxSockets: 1 });
    });
    afterAll(async () => {
      agent?.destroy();
      await app?.close();
    });

    const get = (path: string, headers: Record<string, string>) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const { port } = app.server.address() as { port: number };
        const req = request({ host: "127.0.0.1", port, path, agent, headers }, (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => (body += chunk));
          res.on("end", () => resolve({ status: res.statusCode!, body }));
        });
        req.on("error", reject);
        req.end();
      });

    it("judges each request by its own token, revocation included", async () => {
      const a = await tenantWithToken(app, ["read"]);
      const b = await tenantWithToken(app, ["admin"]);
      const before = connections;
      const tenantA = `/v1/tenants/${a.tenant}`;
      const tenantB = `/v1/tenants/${b.tenant}`;

      expect((await get(tenantA, bearer(a.token))).status).toBe(200);
      expect((await get(tenantA, bearer(a.token))).status).toBe(200);
      // Another tenant's token right after, on the same connection: still another tenant's.
      expect((await get(tenantA, bearer(b.token))).status).toBe(404);
      expect((await get(tenantB, bearer(b.token))).status).toBe(200);
      expect((await get(tenantB, bearer(a.token))).status).toBe(404);
      expect((await get(tenantA, { authorization: `bearer ${a.token}` })).status).toBe(401);
      expect((await get(tenantA, bearer(`${a.token}x`))).status).toBe(401);
      expect((await get(tenantA, {})).status).toBe(401);
      expect((await get(tenantA, bearer(a.token))).status).toBe(200);

      const { items } = (await app.inject({ url: `/v1/tenants/${a.tenant}/tokens`, headers: operator })).json();
      const revoke = await app.inject({ method: "DELETE", url: `/v1/tenants/${a.tenant}/tokens/${items[0].id}`, headers: operator });
      expect(revoke.statusCode).toBe(204);
      const refused = await get(tenantA, bearer(a.token));
      expect(refused.status).toBe(401);
      expect(JSON.parse(refused.body).detail).toBe("token revoked");
      expect((await get(tenantB, bearer(b.token))).status).toBe(200);

      // All of it over the one connection, or the test proved nothing about it.
      expect(connections - before).toBe(1);
    });
  });
});
