// JWT-SVIDs verify with jose against the bundle's jwt-svid keys, and fail
// for a wrong audience and after exp.
import { describe, expect, it } from "vitest";
import { createLocalJWKSet, decodeProtectedHeader, jwtVerify, type JWK } from "jose";
import { CaInputError } from "../../api/src/ca/errors.ts";
import { CALLER, MINUTE, TestClock, newService } from "./helpers.ts";

const ID = "spiffe://acme.test/ns/prod/sa/web";

describe("JWT-SVID", () => {
  it("verifies against the bundle's jwt-svid keys with the SPIFFE header and claims", async () => {
    const clock = new TestClock(Date.now());
    const { ca, store } = newService({ clock });
    await ca.ensure("t1", "acme.test", CALLER);
    const { token, expiresAt } = await ca.issueJwtSvid({ tenantId: "t1", identityName: "web", spiffeId: ID, audience: ["db", "cache"], caller: CALLER });
    const bundle = (await ca.bundle("t1"))!.json;
    // A SPIFFE bundle marks keys with use "jwt-svid"; jose only picks keys
    // whose use is absent or "sig", so a verifier selects the jwt-svid keys
    // and drops `use`, as SPIFFE libraries do when they load a bundle.
    const jwtKeys = bundle.keys.filter((k) => k.use === "jwt-svid").map(({ use: _use, ...k }) => k as JWK);
    expect(jwtKeys).toHaveLength(1);
    const jwks = createLocalJWKSet({ keys: jwtKeys });

    expect(decodeProtectedHeader(token)).toEqual({ alg: "ES256", kid: jwtKeys[0]!.kid, typ: "JWT" });
    const { payload } = await jwtVerify(token, jwks, { audience: "db", algorithms: ["ES256"], currentDate: clock.now() });
    expect(Object.keys(payload).sort()).toEqual(["aud", "exp", "iat", "sub"]);
    expect(payload).toMatchObject({ sub: ID, aud: ["db", "cache"] });
    expect(payload.exp! - payload.iat!).toBe(300);
    expect(expiresAt.getTime()).toBe(payload.exp! * 1000);
    expect(store.issuances.at(-1)).toMatchObject({ kind: "jwt-svid", spiffeId: ID, serial: null });

    await expect(jwtVerify(token, jwks, { audience: "other", currentDate: clock.now() })).rejects.toThrow(/aud/);
    await expect(jwtVerify(token, jwks, { audience: "db", currentDate: new Date(expiresAt.getTime() + 1000) })).rejects.toThrow(/exp/);
    // x509-svid keys of the bundle must not verify JWTs.
    const x509Only = createLocalJWKSet({
      keys: bundle.keys.filter((k) => k.use === "x509-svid").map(({ use: _use, ...k }) => k as JWK),
    });
    await expect(jwtVerify(token, x509Only, { currentDate: clock.now() })).rejects.toThrow();
  });

  it("refuses an empty audience with a field error", async () => {
    const { ca } = newService();
    await ca.ensure("t1", "acme.test", CALLER);
    const p = ca.issueJwtSvid({ tenantId: "t1", identityName: "web", spiffeId: ID, audience: [], caller: CALLER });
    await expect(p).rejects.toBeInstanceOf(CaInputError);
    await expect(p).rejects.toMatchObject({ errors: [{ field: "audience" }] });
  });

  it("never outlives its signing key", async () => {
    const clock = new TestClock(Date.now());
    const { ca } = newService({ clock, caTtlMs: 10 * MINUTE });
    await ca.ensure("t1", "acme.test", CALLER);
    clock.advance(8 * MINUTE);
    const { expiresAt } = await ca.issueJwtSvid({ tenantId: "t1", identityName: "web", spiffeId: ID, audience: ["db"], caller: CALLER });
    const notAfter = Math.floor((clock.t - 8 * MINUTE + 10 * MINUTE) / 1000) * 1000;
    expect(expiresAt.getTime()).toBe(notAfter);
  });
});
