import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { BACKENDS, expectProblem, operator, skipBackend, startApi } from "../support/api.ts";

describe.each(BACKENDS)("numbers that coerce to Infinity on %s", (backend) => {
  describe.skipIf(skipBackend(backend))("", () => {
    let app: WeftApp;
    beforeAll(async () => {
      app = await startApi(backend);
    });
    afterAll(async () => app?.close());

    it.each(["9".repeat(600), "1e400", "Infinity"])("answers 400 naming query.limit for limit=%s", async (limit) => {
      const res = await app.inject({ url: `/v1/tenants?limit=${limit}`, headers: operator });
      expectProblem(res, 400);
      expect(res.json().errors).toEqual([{ field: "query.limit", message: "must be a finite number" }]);
    });
  });
});
