import { createHash } from "node:crypto";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { Type } from "@sinclair/typebox";
import { tenantOf } from "../../auth/guard.ts";
import { systemCaller, type Caller, type CaState } from "../../ca/service.ts";
import { notFound } from "../../http/problem.ts";
import { jwtSigningKeys } from "../../ca/bundle.ts";
import { TenantParams } from "../../http/schemas.ts";
import { callerOf } from "../../ca/store.ts";
import type { TenantDbRow } from "../../services/tenant-directory.ts";
import { NotModified, problemResponses } from "../responses.ts";
import { contentEtag, notModified } from "../../http/conventions.ts";
import { PreconditionHeaders } from "../../http/headers.ts";
import type { FastifyReply, FastifyRequest } from "fastify";
import { caCall } from "./problems.ts";
import { Bundle, CaStatus, Jwks } from "./schemas.ts";

const tags = ["ca"];
/** A public bundle read that finds no CA makes one; nobody in particular asked. */
const BOOTSTRAP = systemCaller("system:ca-bootstrap");
const PEM_TYPE = "application/x-pem-file";

/** Slots without their key material: nothing sealed leaves through here. */
const toStatus = (s: CaState) => ({
  bundleSequence: s.sequence,
  authorities: s.slots.map((x) => ({
    id: x.id,
    status: x.status,
    notBefore: x.notBefore.toISOString(),
    notAfter: x.notAfter.toISOString(),
    maxIssuedNotAfter: x.maxIssuedNotAfter?.toISOString() ?? null,
  })),
});

/**
 * A bundle answer as SPIFFE bundle endpoint clients (SPIRE's federation,
 * caches in front of it) use it: an ETag of its bytes, a 304 for a client
 * that holds them, and a freshness lifetime of the bundle's refresh hint.
 */
function sendBundle(request: FastifyRequest, reply: FastifyReply, body: string, type: string, refreshHintSeconds: number) {
  const etag = contentEtag(body);
  reply.header("etag", etag).header("cache-control", `public, max-age=${refreshHintSeconds}`);
  if (notModified(etag, request.headers["if-none-match"])) return reply.code(304).send();
  return reply.type(type).send(body);
}

const caRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;

  /**
   * The bundle of a tenant by name. A tenant normally gets its CA at
   * creation; one created before that step (or whose bootstrap failed) gets
   * it here, so a bundle endpoint never answers "no CA".
   */
  async function bundleOf(name: string) {
    const tenant = await weft.directory.byName(name);
    if (!tenant) throw notFound(`tenant "${name}"`);
    const id = String(tenant.id);
    const found = await weft.ca.bundle(id);
    if (found) return found;
    await weft.ca.ensure(id, tenant.trustDomain, BOOTSTRAP);
    return (await weft.ca.bundle(id))!;
  }

  // Bundle endpoints are public: the SPIFFE federation spec forbids requiring
  // client authentication, and a bundle holds only public keys.
  app.get(
    "/v1/tenants/:tenant/bundle",
    {
      config: { auth: { who: "public" } },
      schema: {
        tags,
        summary: "The tenant's SPIFFE trust bundle (JWK set); no credential needed",
        description: "Answers an ETag (If-None-Match: 304) and Cache-Control max-age of the bundle's spiffe_refresh_hint.",
        params: TenantParams,
        headers: PreconditionHeaders,
        response: { 200: Bundle, 304: NotModified, ...problemResponses(400, 404) },
      },
    },
    async (request, reply) => {
      const { json } = await bundleOf(request.params.tenant);
      return sendBundle(request, reply, JSON.stringify(json), "application/json", json.spiffe_refresh_hint);
    },
  );

  app.get(
    "/v1/tenants/:tenant/bundle.pem",
    {
      config: { auth: { who: "public" } },
      schema: {
        tags,
        summary: "The tenant's trusted CA certificates as PEM; no credential needed",
        description: "Answers an ETag (If-None-Match: 304) and Cache-Control max-age of the bundle's spiffe_refresh_hint.",
        params: TenantParams,
        headers: PreconditionHeaders,
        response: {
          200: { description: "CA certificates, PEM", content: { [PEM_TYPE]: { schema: Type.String() } } },
          304: NotModified,
          ...problemResponses(400, 404),
        },
      },
    },
    async (request, reply) => {
      const { json, pem } = await bundleOf(request.params.tenant);
      return sendBundle(request, reply, pem, PEM_TYPE, json.spiffe_refresh_hint);
    },
  );

  // The same public keys as the bundle's jwt-svid entries, so just as public.
  app.get(
    "/v1/tenants/:tenant/jwks",
    {
      config: { auth: { who: "public" } },
      schema: {
        operationId: "getJwks",
        tags,
        summary: "The tenant's JWT-SVID keys as a plain JWK set (use: sig) for OIDC-style verifiers; no credential needed",
        params: TenantParams,
        headers: Type.Pick(PreconditionHeaders, ["if-none-match"]),
        response: { 200: Jwks, 304: NotModified, ...problemResponses(400, 404) },
      },
    },
    async (request, reply) => {
      const { json } = await bundleOf(request.params.tenant);
      const jwks = jwtSigningKeys(json);
      const etag = `"${createHash("sha256").update(JSON.stringify(jwks)).digest("base64url").slice(0, 27)}"`;
      // A new key is in the set from the CA's prepare phase on, long before it signs: a verifier
      // that caches for the bundle's refresh hint never meets a token signed by a key it lacks.
      reply.header("etag", etag).header("cache-control", `public, max-age=${json.spiffe_refresh_hint}`);
      if (notModified(etag, request.headers["if-none-match"])) return reply.code(304).send();
      return jwks;
    },
  );

  const rotationRoute = (verb: "prepare" | "activate", summary: string, run: (t: TenantDbRow, caller: Caller) => Promise<CaState>) =>
    app.post(
      `/v1/tenants/:tenant/ca/${verb}`,
      {
        config: { auth: { who: "tenant", scope: "admin" } },
        schema: {
          tags,
          summary,
          params: TenantParams,
          response: { 200: CaStatus, ...problemResponses(400, 401, 403, 404, 409) },
        },
      },
      async (request) => {
        const tenant = tenantOf(request);
        return toStatus(await caCall(() => run(tenant, callerOf(request))));
      },
    );

  rotationRoute("prepare", "Put a new CA in the bundle without signing with it (409 if one is prepared)", (t, caller) =>
    weft.ca.prepare(String(t.id), t.trustDomain, caller),
  );
  rotationRoute("activate", "Make the prepared CA the signer; the old one stays trusted until its SVIDs expire (409 if none)", (t, caller) =>
    weft.ca.activate(String(t.id), caller),
  );
};

export default caRoutes;
