import { describe, expect, it } from "vitest";
import { AuthFailureLimiter, clientKey } from "../../api/src/auth/failure-limiter.ts";
import { ConfigError, configFromEnv } from "../../api/src/config.ts";
import { BACKENDS, backendDatabase, bearer, expectProblem, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { registeredNode } from "../support/nodes.ts";

// After WEFT_AUTH_FAILURE_LIMIT failed authentications (401) from one address
// within WEFT_AUTH_FAILURE_WINDOW_SECONDS, routes that take a credential
// answer 429 with Retry-After until the window closes.

describe("the failure limiter", () => {
  it("blocks an address at the limit until its window closes, then lets it try again", () => {
    let now = 1_000_000;
    const limiter = new AuthFailureLimiter({ limit: 3, windowMs: 60_000 }, () => now);
    for (let i = 0; i < 2; i++) limiter.failed("192.0.2.1");
    expect(limiter.retryAfter("192.0.2.1")).toBe(0);
    limiter.failed("192.0.2.1");
    expect(limiter.retryAfter("192.0.2.1")).toBe(60);
    expect(limiter.retryAfter("192.0.2.2")).toBe(0);
    now += 59_001;
    expect(limiter.retryAfter("192.0.2.1")).toBe(1);
    now += 1_000;
    expect(limiter.retryAfter("192.0.2.1")).toBe(0);
    limiter.failed("192.0.2.1");
    expect(limiter.retryAfter("192.0.2.1")).toBe(0);
  });

  it("keeps its memory bounded whatever the number of addresses", () => {
    let now = 0;
    const limiter = new AuthFailureLimiter({ limit: 2, windowMs: 60_000, maxTracked: 1000 }, () => now);
    for (let i = 0; i < 100_000; i++) {
      limiter.failed(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
      if (i % 1000 === 0) now += 1;
    }
    expect(limiter.tracked).toBeLessThanOrEqual(1000);
    // The latest addresses are the ones remembered.
    limiter.failed("10.1.134.159");
    expect(limiter.retryAfter("10.1.134.159")).toBeGreaterThan(0);
    // Closed windows are dropped as new ones open.
    now += 120_000;
    limiter.failed("203.0.113.9");
    expect(limiter.tracked).toBe(1);
  });

  it("counts an IPv6 client by its /64 and an IPv4-mapped one as IPv4", () => {
    expect(clientKey("2001:db8:1:2:aaaa::1")).toBe(clientKey("2001:0db8:0001:0002:ffff:1:2:3"));
    expect(clientKey("2001:db8:1:2::1")).not.toBe(clientKey("2001:db8:1:3::1"));
    expect(clientKey("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(clientKey("::1")).toBe(clientKey("::2"));
    expect(clientKey("192.0.2.7")).toBe("192.0.2.7");
  });

  it("is configured by WEFT_AUTH_FAILURE_LIMIT and WEFT_AUTH_FAILURE_WINDOW_SECONDS, 30 per 60 s by default", () => {
    expect(configFromEnv({})).toMatchObject({ authFailureLimit: 30, authFailureWindowMs: 60_000 });
    expect(configFromEnv({ WEFT_AUTH_FAILURE_LIMIT: "5", WEFT_AUTH_FAILURE_WINDOW_SECONDS: "10" })).toMatchObject({
      authFailureLimit: 5,
      authFailureWindowMs: 10_000,
    });
    for (const [name, value] of [["WEFT_AUTH_FAILURE_LIMIT", "-1"], ["WEFT_AUTH_FAILURE_LIMIT", "many"], ["WEFT_AUTH_FAILURE_WINDOW_SECONDS", "0"]] as const) {
      expect(() => configFromEnv({ [name]: value })).toThrow(ConfigError);
      expect(() => configFromEnv({ [name]: value })).toThrow(new RegExp(`^${name} `));
    }
  });
});

describe.each(BACKENDS)("failed authentications on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    it("answers 429 with Retry-After after the default 30 failures from one address, to every credential", async () => {
      const app = await startApi(backend);
      try {
        const t = await tenantWithToken(app, ["admin"]);
        const node = await registeredNode(app);
        for (let i = 0; i < 30; i++) {
          const headers = i % 3 === 0 ? {} : bearer(i % 3 === 1 ? "guess-0123456789" : `${t.token.slice(0, -2)}xx`);
          expectProblem(await app.inject({ url: `/v1/tenants/${t.tenant}`, headers }), 401);
        }
        const limited = await app.inject({ url: `/v1/tenants/${t.tenant}`, headers: bearer("guess-31") });
        expect(expectProblem(limited, 429).detail).toMatch(/too many failed authentications/);
        const retryAfter = Number(limited.headers["retry-after"]);
        expect(String(retryAfter)).toBe(limited.headers["retry-after"]);
        expect(retryAfter).toBeGreaterThanOrEqual(1);
        expect(retryAfter).toBeLessThanOrEqual(60);
        // The operator token (it may be a chosen string) is refused right or wrong meanwhile, and so are join tokens.
        expectProblem(await app.inject({ url: "/v1/tenants", headers: operator }), 429);
        expectProblem(await app.inject({ method: "POST", url: "/v1/nodes/register", payload: {} }), 429);
        // A tenant token and a node credential that verify still pass: whoever shares the address (a NAT, a
        // workload behind its node's address) cannot cut agents and clients off.
        expect((await app.inject({ url: `/v1/tenants/${t.tenant}`, headers: bearer(t.token) })).statusCode).toBe(200);
        expect((await app.inject({ url: `/v1/nodes/${node.name}/datapath`, headers: bearer(node.credential) })).statusCode).toBe(200);
        // A wrong one still gets 429, not 401.
        expectProblem(await app.inject({ url: `/v1/nodes/${node.name}/datapath`, headers: bearer(`${node.credential.slice(0, -2)}xx`) }), 429);
        // Public reads stay open; other addresses are not affected.
        expect((await app.inject({ url: "/healthz" })).statusCode).toBe(200);
        expect((await app.inject({ url: `/v1/tenants/${t.tenant}/bundle` })).statusCode).toBe(200);
        const elsewhere = { remoteAddress: "198.51.100.7" };
        expect((await app.inject({ url: `/v1/tenants/${t.tenant}`, headers: bearer(t.token), ...elsewhere })).statusCode).toBe(200);
        expect((await app.inject({ url: "/v1/tenants", headers: operator, ...elsewhere })).statusCode).toBe(200);
      } finally {
        await app.close();
      }
    });

    it("counts guesses at a chosen operator token sent all at once: past the limit none is tried", async () => {
      const chosen = "correct-horse-battery-staple-42";
      const app = await startApi(backend, { operatorToken: chosen });
      try {
        const guesses = Array.from({ length: 120 }, (_, i) => app.inject({ url: "/v1/tenants", headers: bearer(`correct-horse-battery-${i}`) }));
        guesses.push(app.inject({ url: "/v1/tenants", headers: bearer(chosen) }));
        const statuses = (await Promise.all(guesses)).map((r) => r.statusCode);
        expect(statuses.filter((st) => st === 401)).toHaveLength(30);
        expect(statuses.filter((st) => st === 429)).toHaveLength(91);
        expect(statuses.at(-1)).toBe(429);
      } finally {
        await app.close();
      }
    });

    it("lets the address in again once the window has passed", async () => {
      const app = await startApi(backend, { authFailureLimit: 2, authFailureWindowMs: 1000 });
      try {
        for (let i = 0; i < 2; i++) expectProblem(await app.inject({ url: "/v1/tenants", headers: bearer("nope-nope-nope") }), 401);
        const limited = await app.inject({ url: "/v1/tenants", headers: operator });
        expectProblem(limited, 429);
        expect(limited.headers["retry-after"]).toBe("1");
        // Poll (bounded) until the window has closed: no timing is asserted, only that it opens again.
        let status = 429;
        for (let i = 0; i < 50 && status === 429; i++) {
          await new Promise((r) => setTimeout(r, 100));
          status = (await app.inject({ url: "/v1/tenants", headers: operator })).statusCode;
        }
        expect(status).toBe(200);
      } finally {
        await app.close();
      }
    });
  });
});
