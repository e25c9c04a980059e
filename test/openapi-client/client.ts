/**
 * A small client of the Weft API as a user would write it: types generated
 * from openapi/openapi.json by openapi-typescript, calls through
 * openapi-fetch. test/api/openapi-client.test.ts compiles it with tsc (and
 * miswritten copies of it, which must not compile) and runs it against a
 * live API. Kept out of the root tsconfig: schema.d.ts exists only there.
 */
import createClient from "openapi-fetch";
import type { components, operations, paths } from "./schema.js";

type Identity = components["schemas"]["Identity"];
type PutIdentityBody = operations["putIdentity"]["requestBody"]["content"]["application/json"];

export interface Walk {
  identity: Identity;
  listed: string[];
  jwtSvid: string;
  missingStatus: number;
}

export async function walk(baseUrl: string, token: string, tenant: string): Promise<Walk> {
  const client = createClient<paths>({ baseUrl, headers: { authorization: `Bearer ${token}` } });
  const spec: PutIdentityBody = { path: "/ns/prod/sa/web", selectors: { app: "web" } };
  const put = await client.PUT("/v1/tenants/{tenant}/identities/{name}", {
    params: { path: { tenant, name: "web" } }, // PATH PARAMS
    body: spec,
  });
  if (!put.data) throw new Error(`putIdentity answered ${put.response.status}`);
  const identity: Identity = put.data;
  const securityIdentity: number = put.data.securityIdentity; // READ A NUMBER

  const list = await client.GET("/v1/tenants/{tenant}/identities", { params: { path: { tenant }, query: { limit: 10 } } });
  const listed = (list.data?.items ?? []).map((i) => i.name);

  const minted = await client.POST("/v1/tenants/{tenant}/identities/{name}/jwt-svids", {
    params: { path: { tenant, name: "web" } },
    body: { audience: ["billing"] }, // JWT BODY
  });
  if (!minted.data) throw new Error(`mintJwtSvid answered ${minted.response.status}`);

  const missing = await client.GET("/v1/tenants/{tenant}/identities/{name}", { params: { path: { tenant, name: "nobody" } } });
  // A problem answer is typed too: the generated Problem schema.
  const problem: components["schemas"]["Problem"] | undefined = missing.error;
  if (securityIdentity < 256) throw new Error("securityIdentity below the reserved range");
  return { identity, listed, jwtSvid: minted.data.token, missingStatus: problem?.status ?? 0 };
}
