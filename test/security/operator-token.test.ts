import { describe, expect, it } from "vitest";
import { buildApp } from "../../api/src/app.ts";
import { ConfigError, configFromEnv } from "../../api/src/config.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, skipBackend, startApi, testConfig, uniqueName } from "../support/api.ts";

// WEFT_OPERATOR_TOKEN may be any token of at least 24 characters a Bearer
// header can carry: it authenticates as the operator, prefix or not.

const CUSTOM = "my-own-operator-secret-0123456789";

describe("WEFT_OPERATOR_TOKEN at start-up", () => {
  it("takes a token without the weft_op_ prefix, and refuses with one line naming the variable one that could never authenticate", () => {
    expect(configFromEnv({ WEFT_OPERATOR_TOKEN: CUSTOM }).operatorToken).toBe(CUSTOM);
    expect(configFromEnv({ WEFT_OPERATOR_TOKEN: "Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA=" }).operatorToken).toBe("Zm9vYmFyYmF6cXV4cXV1eDEyMzQ1Njc4OTA=");
    for (const bad of ["short-token", "has a space in it, 24+ characters", "tok!en-0123456789012345678", "weft_node_0123456789012345678", "ünïcödé-0123456789012345678"]) {
      let error: unknown;
      try {
        configFromEnv({ WEFT_OPERATOR_TOKEN: bad });
      } catch (err) {
        error = err;
      }
      expect(error, bad).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message).toMatch(/^WEFT_OPERATOR_TOKEN /);
      expect(message).not.toContain("\n");
      expect(message).not.toContain(bad);
    }
  });
});

describe.each(BACKENDS)("an operator token without the prefix on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    it("authenticates as the operator; anything else stays 401", async () => {
      const app = await startApi(backend, { operatorToken: CUSTOM });
      try {
        const name = uniqueName("op");
        const created = await app.inject({ method: "POST", url: "/v1/tenants", headers: bearer(CUSTOM), payload: { name } });
        expect(created.statusCode, created.body).toBe(201);
        expect((await app.inject({ url: `/v1/tenants/${name}`, headers: bearer(CUSTOM) })).statusCode).toBe(200);
        const audit = await app.inject({ url: `/v1/tenants/${name}/audit`, headers: bearer(CUSTOM) });
        expect(audit.json().items.find((e: { action: string }) => e.action === "tenant.create")?.actor).toBe("operator");
        for (const wrong of [`${CUSTOM}x`, CUSTOM.slice(0, -1), `weft_op_${CUSTOM}`]) {
          expectProblem(await app.inject({ url: "/v1/tenants", headers: bearer(wrong) }), 401);
        }
      } finally {
        await app.close();
      }
    });
  });
});

describe("an operator token without the prefix, on a replica started without it", () => {
  it("is recognised from the stored hash", async () => {
    const first = await startApi("pglite", { operatorToken: CUSTOM });
    // Same database, no WEFT_OPERATOR_TOKEN: the replica knows only the hash the first one stored.
    const replica = await buildApp(testConfig("pglite", { operatorToken: undefined }), { database: first.weft.database });
    try {
      expect((await replica.inject({ url: "/v1/tenants", headers: bearer(CUSTOM) })).statusCode).toBe(200);
      expectProblem(await replica.inject({ url: "/v1/tenants", headers: bearer(`${CUSTOM}x`) }), 401);
    } finally {
      await replica.close();
      await first.close();
    }
  });
});
