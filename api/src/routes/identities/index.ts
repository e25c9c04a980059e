import { etagOf } from "../../mesh/preconditions.ts";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import type { Static } from "@sinclair/typebox";
import type { FastifyRequest } from "fastify";
import { tenantOf } from "../../auth/guard.ts";
import { mayObtainSvid, svidPrincipalOf } from "../../ca/authz.ts";
import type { Caller } from "../../ca/service.ts";
import { spiffeId } from "../../ca/spiffe-id.ts";
import { DEFAULT_PAGE_SIZE, decodeCursor, notModified, page } from "../../http/conventions.ts";
import { PreconditionHeaders } from "../../http/headers.ts";
import { fieldProblem, forbidden, notFound } from "../../http/problem.ts";
import { DryRunQuery, ListQuery, Page, TenantParams } from "../../http/schemas.ts";
import { callerOf } from "../../ca/store.ts";
import type { TenantDbRow } from "../../services/tenant-directory.ts";
import { caCall } from "../ca/problems.ts";
import { NoContent, NotModified, problemResponses } from "../responses.ts";
import { Identity, IdentityParams, JwtSvid, JwtSvidRequest, NodeProxySvid, X509Svid, X509SvidRequest } from "./schemas.ts";
import { IdentitySpec } from "../../mesh/specs.ts";
import type { Db } from "../../db/client.ts";
import { FeedCache } from "../../services/feed-cache.ts";
import { nodeHostsTenant, workloadsCarrying } from "../../mesh/nodes.ts";
import { nodeProxyPath, reservedPathErrors } from "../../ca/node-proxy-id.ts";
import { deleteIdentity, findIdentity, getIdentity, listIdentities, putIdentity, type IdentityDbRow } from "../../mesh/identities.ts";
import type { SvidKind } from "../../plugins/domain-metrics.ts";

/** The API representation of a stored row. */
const toIdentity = (trustDomain: string, row: IdentityDbRow): Identity => ({
  name: row.name,
  path: row.path,
  spiffeId: spiffeId(trustDomain, row.path),
  securityIdentity: row.securityIdentity,
  selectors: row.selectors,
  nodeSelector: row.nodeSelector,
  allowNodeRegistration: row.allowNodeRegistration,
  x509SvidTtlSeconds: row.x509SvidTtlSeconds,
  jwtSvidTtlSeconds: row.jwtSvidTtlSeconds,
  etag: etagOf(row.revision),
  createdAt: row.createdAt.toISOString(),
  updatedAt: row.updatedAt.toISOString(),
});

const tags = ["identities"];

/**
 * The identity an SVID is asked for, once authz.ts allows it: the one place
 * that decides who may obtain SVIDs (tenant tokens, and node agents for the
 * workloads on their node that the identity's nodeSelector matches). The
 * guard only established a principal that can see the tenant. A node's facts
 * (its workloads, its labels, the identity's selector) are read from the
 * database for every request, never from the identity cache below, so a
 * change stops issuance with the next request.
 */
async function svidSubject(request: FastifyRequest, identities: FeedCache<IdentityDbRow | null>, db: Db, name: string) {
  const tenant = tenantOf(request);
  if (!request.principal) throw new Error("SVID route reached without a principal: its access rule is not public");
  const ref = { tenantId: String(tenant.id), identityName: name };
  const decision = mayObtainSvid(await svidPrincipalOf(request.principal, ref, workloadsCarrying(db)), ref);
  if (!decision.allow) throw decision.reason === "not_found" ? notFound(`identity "${name}"`) : forbidden(decision.message);
  const row = await identities.get(`${tenant.id}/${name}`, () => findIdentity(db, tenant.id, name));
  if (!row) throw notFound(`identity "${name}"`);
  // A path stored before /weft/ was reserved: its SVID would pass for a node's proxy (node-proxy-id.ts).
  const reserved = reservedPathErrors(row.path);
  if (reserved.length > 0) throw fieldProblem(409, `identity "${name}" has a reserved path: give it another (PUT) to obtain SVIDs`, "path", reserved[0]!.message);
  return { tenant, row, id: spiffeId(tenant.trustDomain, row.path) };
}

const ttlMs = (seconds: number | null) => (seconds === null ? {} : { ttlMs: seconds * 1000 });

const identityRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const { weft } = app;
  const show = (tenant: TenantDbRow, row: IdentityDbRow) => toIdentity(tenant.trustDomain, row);
  // Every SVID request reads its identity; identities change rarely, and the feed says when.
  const identities = new FeedCache<IdentityDbRow | null>(weft.feed, (e) => (e.kind === "identity" ? `${e.tenantId}/${e.name}` : null));

  /** Authorizes, finds the identity, runs one CaService issuance on the caller's behalf. */
  async function issue<T extends { expiresAt: Date }>(
    request: FastifyRequest<{ Params: { tenant: string; name: string } }>,
    kind: SvidKind,
    run: (who: { tenantId: string; identityName: string; spiffeId: string; caller: Caller }, row: IdentityDbRow) => Promise<T>,
  ): Promise<Omit<T, "expiresAt"> & { expiresAt: string }> {
    const { tenant, row, id } = await svidSubject(request, identities, weft.db, request.params.name);
    const who = { tenantId: String(tenant.id), identityName: row.name, spiffeId: id, caller: callerOf(request) };
    const svid = await caCall(() => run(who, row));
    weft.metrics.svidIssued(tenant.name, kind);
    return { ...svid, expiresAt: svid.expiresAt.toISOString() };
  }

  app.get(
    "/v1/tenants/:tenant/identities",
    {
      config: { auth: { who: "tenant", scope: "read" } },
      schema: {
        tags,
        summary: "List identities",
        params: TenantParams,
        querystring: ListQuery,
        response: { 200: Page(Identity), ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const tenant = tenantOf(request);
      const limit = request.query.limit ?? DEFAULT_PAGE_SIZE;
      const rows = await listIdentities(weft.db, tenant.id, limit, decodeCursor<string>(request.query.cursor, "string"));
      return page(rows, limit, (r) => r.name, (r) => show(tenant, r));
    },
  );

  app.get(
    "/v1/tenants/:tenant/identities/:name",
    {
      config: { auth: { who: "tenant", scope: "read" } },
      schema: {
        tags,
        summary: "Read an identity",
        params: IdentityParams,
        headers: PreconditionHeaders,
        response: { 200: Identity, 304: NotModified, ...problemResponses(400, 401, 403, 404) },
      },
    },
    async (request, reply) => {
      const tenant = tenantOf(request);
      const identity = show(tenant, await getIdentity(weft.db, tenant.id, request.params.name));
      reply.header("etag", identity.etag);
      if (notModified(identity.etag, request.headers["if-none-match"])) return reply.code(304).send();
      return identity;
    },
  );

  app.put(
    "/v1/tenants/:tenant/identities/:name",
    {
      config: { auth: { who: "tenant", scope: "write" } },
      schema: {
        tags,
        summary: "Create or replace an identity",
        params: IdentityParams,
        querystring: DryRunQuery,
        headers: PreconditionHeaders,
        body: IdentitySpec,
        response: { 200: Identity, 201: Identity, ...problemResponses(400, 401, 403, 404, 409, 412, 422) },
      },
    },
    async (request, reply) => {
      const tenant = tenantOf(request);
      const { row, intent } = await caCall(() =>
        weft.writeFor(request, tenant.id, (w) =>
          putIdentity(w, tenant, request.params.name, request.body, {
            ifMatch: request.headers["if-match"],
            ifNoneMatch: request.headers["if-none-match"],
          }, weft.follower),
        ),
      );
      const identity = show(tenant, row);
      return reply.code(intent === "create" ? 201 : 200).header("etag", identity.etag).send(identity);
    },
  );

  app.delete(
    "/v1/tenants/:tenant/identities/:name",
    {
      config: { auth: { who: "tenant", scope: "write" } },
      schema: {
        tags,
        summary: "Delete an identity (SVIDs already issued stay valid until they expire)",
        params: IdentityParams,
        querystring: DryRunQuery,
        headers: PreconditionHeaders,
        response: { 204: NoContent, ...problemResponses(400, 401, 403, 404, 412, 422) },
      },
    },
    async (request, reply) => {
      const tenant = tenantOf(request);
      await weft.writeFor(request, tenant.id, (w) =>
        deleteIdentity(w, tenant.id, request.params.name, request.headers["if-match"], weft.follower),
      );
      return reply.code(204).send();
    },
  );

  app.post(
    "/v1/tenants/:tenant/identities/:name/x509-svids",
    {
      // authz.ts decides (write scope for tenant tokens, a workload on the node
      // for node credentials); the guard only needs to see the tenant.
      config: { auth: { who: "tenant", scope: "read", nodes: true } },
      schema: {
        operationId: "mintX509Svid",
        tags,
        summary:
          "Issue an X.509-SVID from a PKCS#10 CSR (needs the write scope, or a node credential of a node running a workload of this identity and matched by its nodeSelector now)",
        params: IdentityParams,
        body: X509SvidRequest,
        response: { 201: X509Svid, ...problemResponses(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request, reply) => {
      const svid = await issue(request, "x509-svid", (who, row) =>
        weft.ca.issueX509Svid({ ...who, csrPem: request.body.csr, ...ttlMs(row.x509SvidTtlSeconds) }),
      );
      // JSON.stringify instead of the schema's serializer, which escapes the
      // two PEM strings a character at a time (about 9 us per SVID in
      // bench/svid's profile). The object is built field by field from the
      // schema, so nothing else can leak into the answer.
      const body: Static<typeof X509Svid> = { certificate: svid.certificate, chain: svid.chain, expiresAt: svid.expiresAt, serial: svid.serial };
      return reply.code(201).serializer(JSON.stringify).send(body);
    },
  );

  app.post(
    "/v1/tenants/:tenant/node-proxy-svids",
    {
      // Only a node's own credential: the SVID names the node. The guard lets a node through to any tenant, so the
      // handler asks for a workload of this tenant on it (a node fronts the L7 services of its own callers only).
      config: { auth: { who: "tenant", scope: "read", nodes: true } },
      schema: {
        operationId: "mintNodeProxySvid",
        tags,
        summary:
          "Issue the calling node's L7 proxy an X.509-SVID of this tenant (spiffe://<trust domain>/weft/node/<node>/proxy), which the node's transport presents when it carries the proxy's connections to backends on other nodes. Node credentials only (others: 403), of a node running a workload of the tenant (else 404, as for a tenant that does not exist)",
        params: TenantParams,
        body: X509SvidRequest,
        response: { 201: NodeProxySvid, ...problemResponses(400, 401, 403, 404, 409, 503) },
      },
    },
    async (request, reply) => {
      const tenant = tenantOf(request);
      const principal = request.principal;
      if (principal?.kind !== "node") throw forbidden("a node proxy's SVID is issued to that node's own credential only");
      // As for a tenant that does not exist: a node learns nothing of tenants it runs nothing of.
      if (!(await nodeHostsTenant(weft.db, principal.node, tenant.id))) throw notFound(`tenant "${tenant.name}"`);
      const id = spiffeId(tenant.trustDomain, nodeProxyPath(principal.node));
      const svid = await caCall(() =>
        weft.ca.issueX509Svid({ tenantId: String(tenant.id), identityName: `node-proxy:${principal.node}`, spiffeId: id, csrPem: request.body.csr, caller: callerOf(request) }),
      );
      weft.metrics.svidIssued(tenant.name, "x509-svid");
      const body: Static<typeof NodeProxySvid> = { certificate: svid.certificate, chain: svid.chain, expiresAt: svid.expiresAt.toISOString(), serial: svid.serial, spiffeId: id };
      return reply.code(201).serializer(JSON.stringify).send(body);
    },
  );

  app.post(
    "/v1/tenants/:tenant/identities/:name/jwt-svids",
    {
      // As for X.509-SVIDs: authz.ts decides, so a node's agent may mint JWT-SVIDs
      // for the workloads on it (the Workload API's FetchJWTSVID) and no others.
      config: { auth: { who: "tenant", scope: "read", nodes: true } },
      schema: {
        operationId: "mintJwtSvid",
        tags,
        summary:
          "Issue a JWT-SVID for the given audience (needs the write scope, or a node credential of a node running a workload of this identity and matched by its nodeSelector now)",
        params: IdentityParams,
        body: JwtSvidRequest,
        response: { 201: JwtSvid, ...problemResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const svid = await issue(request, "jwt-svid", (who, row) =>
        weft.ca.issueJwtSvid({ ...who, audience: request.body.audience, ...ttlMs(row.jwtSvidTtlSeconds) }),
      );
      return reply.code(201).send(svid);
    },
  );
};

export default identityRoutes;
