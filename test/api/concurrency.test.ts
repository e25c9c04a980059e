import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, backendDatabase, operator, skipBackend, startApi, uniqueName } from "../support/api.ts";

const N = 10;

describe.each(BACKENDS)("concurrent writes on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    const put = (name: string, displayName: string, headers: Record<string, string>) =>
      app.inject({ method: "PUT", url: `/v1/tenants/${name}`, headers: { ...operator, ...headers }, payload: { displayName } });

    it(`lets exactly one of ${N} PUTs carrying the same If-Match win`, async () => {
      const name = uniqueName("race");
      const etag = (await put(name, "start", {})).headers.etag as string;
      const answers = await Promise.all(Array.from({ length: N }, (_, i) => put(name, `writer-${i}`, { "if-match": etag })));
      const statuses = answers.map((r) => r.statusCode).sort();
      expect(statuses).toEqual([200, ...Array(N - 1).fill(412)]);
      const winner = answers.find((r) => r.statusCode === 200)!;
      const current = (await app.inject({ url: `/v1/tenants/${name}`, headers: operator })).json();
      expect(current).toEqual(winner.json());
      for (const r of answers.filter((a) => a.statusCode === 412)) {
        expect(r.headers["content-type"]).toMatch(/^application\/problem\+json/);
      }
      const changes = (await app.inject({ url: `/v1/tenants/${name}/changes`, headers: operator })).json().items;
      expect(changes.filter((c: { kind: string }) => c.kind === "tenant")).toHaveLength(2);
    });

    it(`lets exactly one of ${N} create-only PUTs create`, async () => {
      const name = uniqueName("race");
      const answers = await Promise.all(Array.from({ length: N }, (_, i) => put(name, `creator-${i}`, { "if-none-match": "*" })));
      expect(answers.map((r) => r.statusCode).sort()).toEqual([201, ...Array(N - 1).fill(412)]);
    });

    it(`creates a tenant once when ${N} POSTs race for the name`, async () => {
      const name = uniqueName("race");
      const answers = await Promise.all(
        Array.from({ length: N }, () => app.inject({ method: "POST", url: "/v1/tenants", headers: operator, payload: { name } })),
      );
      expect(answers.map((r) => r.statusCode).sort()).toEqual([201, ...Array(N - 1).fill(409)]);
    });
  });
});
