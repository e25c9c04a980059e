import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp, type WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, expectProblem, operator, skipBackend, testConfig, uniqueName } from "../support/api.ts";

// The server always makes its own request id (x-request-id, problem bodies,
// the audit log); a client's x-request-id is recorded beside it, as
// clientRequestId in the logs, and only when it is safe.

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe.each(BACKENDS)("request ids on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    const lines: Record<string, unknown>[] = [];
    beforeAll(async () => {
      app = await buildApp(testConfig(backend, { logLevel: "debug" }), {
        logStream: { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) },
      });
    });
    afterAll(async () => app?.close());

    const logsOf = (reqId: string) => lines.filter((l) => l.reqId === reqId);

    it("answers its own id, never the client's, and logs a safe client id beside it", async () => {
      const clientId = `client-req.42:${uniqueName("a_b")}`;
      const res = await app.inject({ url: "/healthz", headers: { "x-request-id": clientId } });
      const id = res.headers["x-request-id"] as string;
      expect(id).toMatch(UUID);
      expect(id).not.toBe(clientId);
      const logged = logsOf(id);
      expect(logged.length).toBeGreaterThan(0);
      for (const line of logged) expect(line.clientRequestId).toBe(clientId);
      expect(lines.filter((l) => l.reqId === clientId)).toEqual([]);

      // A problem document names the server's id too.
      const refused = await app.inject({ url: "/v1/tenants", headers: { "x-request-id": "trace-7" } });
      const problem = expectProblem(refused, 401);
      expect(problem.requestId).toMatch(UUID);
      expect(problem.requestId).not.toBe("trace-7");

      // A client id that is not safe is neither answered nor logged.
      for (const bad of ["has space", "x".repeat(129), "semi;colon", 'quote"d', "{\"json\":1}", "ünï"]) {
        const res = await app.inject({ url: "/healthz", headers: { "x-request-id": bad } });
        const id = res.headers["x-request-id"] as string;
        expect(id).toMatch(UUID);
        for (const line of logsOf(id)) expect(line).not.toHaveProperty("clientRequestId");
      }
      expect(JSON.stringify(lines)).not.toContain("semi;colon");
    });

    it("audits a write under the server's id, not the client's", async () => {
      const tenant = uniqueName("rid");
      const clientId = `forged-${tenant}`;
      const created = await app.inject({ method: "PUT", url: `/v1/tenants/${tenant}`, headers: { ...operator, "x-request-id": clientId }, payload: {} });
      expect(created.statusCode).toBe(201);
      const id = created.headers["x-request-id"] as string;
      expect(id).toMatch(UUID);
      const audit = await app.inject({ url: `/v1/tenants/${tenant}/audit?limit=1000`, headers: operator });
      const entries = audit.json().items as { action: string; requestId: string; clientRequestId: string | null }[];
      expect(entries.filter((e) => e.action === "tenant.create").map((e) => e.requestId)).toEqual([id]);
      // ...and the client's own id beside it, where an operator can find the trail they started.
      expect(entries.filter((e) => e.action === "tenant.create").map((e) => e.clientRequestId)).toEqual([clientId]);
      const unsafe = await app.inject({ method: "PUT", url: `/v1/tenants/${tenant}`, headers: { ...operator, "x-request-id": "semi;colon" }, payload: { displayName: "x" } });
      expect(unsafe.statusCode).toBe(200);
      const after = await app.inject({ url: `/v1/tenants/${tenant}/audit?limit=1000`, headers: operator });
      const update = (after.json().items as { action: string; clientRequestId: string | null }[]).filter((e) => e.action !== "tenant.create").at(-1);
      expect(update?.clientRequestId).toBeNull();
      expect(entries.some((e) => e.requestId === clientId)).toBe(false);
      // The client's id is in the log lines of that request.
      expect(logsOf(id).some((l) => l.clientRequestId === clientId)).toBe(true);
    });
  });
});
