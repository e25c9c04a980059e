// Review of the proxy hop (issue 21): "no workload SVID passes for a node
// proxy" rests on putIdentity refusing paths under /weft/ (ca/node-proxy-id.ts).
// That is a check at write time only. An identity written before this
// version (when /weft/... was an ordinary path; no migration looks for one)
// keeps its path, and the X.509-SVID route issues for an identity's stored
// path without asking again, so its holder gets an SVID that every
// transport takes for a node's proxy (isNodeProxy): it reaches what the
// proxy entries name past the L7 proxy's per-request authorization.
// Failed on main at 7700781 (written ahead of the fix): the SVID routes now refuse such a path.
import { X509Certificate } from "node:crypto";
import { eq } from "drizzle-orm";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WeftApp } from "../../api/src/app.ts";
import { identities } from "../../api/src/db/schema.ts";
import { buildCsr, newWorkloadKey } from "../../nodeagent/src/agent/csr.ts";
import { isNodeProxy } from "../../nodeagent/src/transport/spiffe.ts";
import { BACKENDS, backendDatabase, bearer, operator, skipBackend, startApi, tenantWithToken } from "../support/api.ts";
import { identity } from "../support/mesh.ts";

describe.each(BACKENDS)("an identity under /weft/ from before the reservation, on %s", (backend) => {
  describe.skipIf(skipBackend(backend))(`the API in process, on ${backendDatabase(backend)}`, () => {
    let app: WeftApp;
    let a: { tenant: string; token: string };
    let td: string;

    beforeAll(async () => {
      app = await startApi(backend);
      a = await tenantWithToken(app, ["admin"]);
      td = (await app.inject({ url: `/v1/tenants/${a.tenant}`, headers: operator })).json().trustDomain;
      await identity(app, a.token, a.tenant, "legacy");
      // As an older version stored it: the row's path, written when /weft/ was not reserved.
      await app.weft.db.update(identities).set({ path: "/weft/node/n1/proxy" }).where(eq(identities.name, "legacy"));
    });
    afterAll(async () => app?.close());

    it("issues no SVID that a transport takes for a node's proxy", async () => {
      const res = await app.inject({
        method: "POST",
        url: `/v1/tenants/${a.tenant}/identities/legacy/x509-svids`,
        headers: bearer(a.token),
        payload: { csr: buildCsr(newWorkloadKey().privateKey, { commonName: "legacy" }) },
      });
      const issued = res.statusCode === 201 ? new X509Certificate(res.json().certificate).subjectAltName ?? null : null;
      // On main: 201, URI:spiffe://<td>/weft/node/n1/proxy, which isNodeProxy accepts.
      expect({ status: res.statusCode, san: issued, passesForProxy: issued !== null && isNodeProxy({ id: issued.slice(4), trustDomain: td }) }).toMatchObject({ passesForProxy: false });
      // Refused with a problem that names the path and says what to do; JWT-SVIDs alike.
      expect(res.statusCode).toBe(409);
      expect(res.json().errors).toEqual([expect.objectContaining({ field: "path" })]);
      const jwt = await app.inject({ method: "POST", url: `/v1/tenants/${a.tenant}/identities/legacy/jwt-svids`, headers: bearer(a.token), payload: { audience: ["x"] } });
      expect(jwt.statusCode).toBe(409);
    });
  });
});
