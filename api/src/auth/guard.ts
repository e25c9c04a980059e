import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import fp from "fastify-plugin";
import { DNS_LABEL } from "../http/schemas.ts";
import { noRoute } from "../http/error-handler.ts";
import { HttpProblem, forbidden, notFound, unauthorized } from "../http/problem.ts";
import type { TenantDirectory, TenantDbRow } from "../services/tenant-directory.ts";
import type { AuthFailureLimiter } from "./failure-limiter.ts";
import { NODE_CREDENTIAL_PREFIX, type NodeCredentials } from "./node-credentials.ts";
import { OPERATOR_TOKEN_PREFIX, type OperatorToken } from "./operator-token.ts";
import { hasScope, type Principal, type Scope } from "./principal.ts";
import { TokenRejected, type TenantPrincipal, type TenantTokens } from "./tenant-tokens.ts";

/** Who may call a route; declared once per route in its `config.auth`. */
export type AuthRule =
  | { who: "public" }
  | { who: "operator" }
  /**
   * The operator, or a token of the path's {tenant} holding at least `scope`.
   * Node credentials are refused (403) unless `nodes` is set: then a node
   * reaches the handler for any existing tenant, and the handler must make
   * the per-resource decision itself: ca/authz.ts mayObtainSvid for SVIDs,
   * and the workload store for workload writes (tenant-resource.ts nodeWrites:
   * only on the node itself).
   */
  | { who: "tenant"; scope: Scope; nodes?: true }
  /** The operator, or the credential of the path's {node}; another node gets the 404 of a missing one. */
  | { who: "node" };

declare module "fastify" {
  interface FastifyContextConfig {
    auth?: AuthRule;
  }
  interface FastifyRequest {
    principal: Principal | null;
    /** The path's {tenant}, resolved and authorized, on tenant routes. */
    tenant: TenantDbRow | null;
  }
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;
const BEARER = /^Bearer ([A-Za-z0-9._~+/-]+=*)$/;

type Auth = {
  operator: OperatorToken;
  tokens: TenantTokens;
  directory: TenantDirectory;
  nodes: NodeCredentials;
  /** Failed authentications per client address (WEFT_AUTH_FAILURE_LIMIT); app.ts counts every 401 into it (installErrorHandling). */
  failures: AuthFailureLimiter;
};

const rejected = (err: unknown): unknown => (err instanceof TokenRejected ? unauthorized(err.message) : err);

/**
 * The tenant token a connection last authenticated with: a keep-alive client
 * sends the same Authorization header on every request, and finding it here
 * (by the socket, then one string comparison) spares the header regex and
 * hashing a JWT of a few hundred characters into the verified-token map,
 * which together were the largest cost of the guard. Only the lookup is
 * skipped: expiry and revocation are checked on every request as before.
 * The comparison is with what this same connection sent last, so it tells
 * a client nothing about anyone else's token.
 */
type LastToken = WeakMap<object, { header: string; principal: TenantPrincipal }>;

/**
 * The principal of a request, or a promise of it when it needs I/O or a
 * signature check: a tenant token verified before is answered at once, so
 * the hot read path pays for no promise.
 */
function authenticate(request: FastifyRequest, opts: Auth, lastToken: LastToken): Principal | Promise<Principal> {
  const header = request.headers.authorization;
  if (header === undefined) throw unauthorized("a bearer token is required", null);
  const socket = request.raw.socket as object | null;
  const last = socket ? lastToken.get(socket) : undefined;
  if (last !== undefined && last.header === header) {
    try {
      return opts.tokens.recheck(last.principal);
    } catch (err) {
      throw rejected(err);
    }
  }
  const token = BEARER.exec(header)?.[1];
  if (token === undefined) throw unauthorized("the Authorization header must be 'Bearer <token>'");
  if (token.startsWith(OPERATOR_TOKEN_PREFIX)) {
    if (opts.operator.matches(token)) return { kind: "operator" };
    throw unauthorized("token invalid");
  }
  if (token.startsWith(NODE_CREDENTIAL_PREFIX)) {
    return opts.nodes.nodeOf(token).then((node) => {
      if (node !== null) return { kind: "node", node } as const;
      throw unauthorized("token invalid");
    });
  }
  const remember = (principal: TenantPrincipal) => {
    if (socket) lastToken.set(socket, { header, principal });
    return principal;
  };
  try {
    const cached = opts.tokens.verifyCached(token);
    if (cached) return remember(cached);
  } catch (err) {
    throw rejected(err);
  }
  // WEFT_OPERATOR_TOKEN may be any token of 24 characters or more, without
  // the weft_op_ prefix: one hash before the signature check, which costs more.
  if (opts.operator.matches(token)) return { kind: "operator" };
  // Anything else that is not JWT-shaped fails here, synchronously, so that a
  // guess at a custom operator token counts against its address before the
  // next one is looked at, however many are sent at once.
  if (!JWT_SHAPE.test(token)) throw unauthorized("token invalid");
  return opts.tokens.verify(token).then(remember, (err: unknown) => {
    throw rejected(err);
  });
}

/** The access rule applied to an authenticated request; a promise only when the tenant is not cached. */
function authorize(request: FastifyRequest, rule: Exclude<AuthRule, { who: "public" }>, principal: Principal, opts: Auth): void | Promise<void> {
  request.principal = principal;
  if (rule.who === "operator") {
    if (principal.kind !== "operator") throw forbidden("this route needs the operator token");
    return;
  }
  if (rule.who === "node") {
    if (principal.kind === "tenant") throw forbidden("this route needs the operator token or a node credential");
    const node = (request.params as { node?: string }).node;
    // The same answer as a missing node, so a node cannot learn which other nodes exist.
    if (principal.kind === "node" && principal.node !== node) throw notFound(`node "${node}"`);
    return;
  }
  // Node credentials never read tenant APIs; checked before the tenant is resolved, so nothing leaks.
  if (principal.kind === "node" && !rule.nodes) throw forbidden("a node credential cannot use tenant routes");
  const name = (request.params as { tenant?: string }).tenant;
  if (name === undefined) return;
  const cached = opts.directory.peek(name);
  // A stored tenant's name passed validation when it was created: the regex below is for the rest.
  if (cached) return admitTenant(request, rule, principal, name, cached);
  // A malformed name cannot exist: leave it to validation for a 400.
  if (!DNS_LABEL.test(name)) return;
  if (cached === null) return admitTenant(request, rule, principal, name, cached);
  return opts.directory.byName(name).then((tenant) => admitTenant(request, rule, principal, name, tenant));
}

function admitTenant(request: FastifyRequest, rule: { scope: Scope }, principal: Principal, name: string, tenant: TenantDbRow | null): void {
  if (!tenant || (principal.kind === "tenant" && principal.tenantId !== tenant.id)) {
    throw notFound(`tenant "${name}"`);
  }
  if (principal.kind === "tenant" && !hasScope(principal.scopes, rule.scope)) {
    throw forbidden(`this route needs the ${rule.scope} scope`);
  }
  request.tenant = tenant;
}

const isPromise = <T>(v: T | Promise<T>): v is Promise<T> => typeof (v as { then?: unknown } | undefined)?.then === "function";

/** Public reads (health, metrics, bundles, the OpenAPI document, docs) stay open to an address over its failure limit. */
const limited = (rule: AuthRule | undefined, method: string): boolean =>
  rule !== undefined && (rule.who !== "public" || (method !== "GET" && method !== "HEAD"));

/** Past the limit, a failed authentication answers 429 rather than 401: wrong and right operator tokens alike. */
const limitedError = (err: unknown, wait: number): unknown =>
  wait > 0 && err instanceof HttpProblem && err.status === 401 ? tooManyFailures(wait) : err;

const tooManyFailures = (seconds: number) =>
  new HttpProblem(429, `too many failed authentications from this address; retry in ${seconds} s`, undefined, {
    "retry-after": String(seconds),
  });

/**
 * Authentication, tenancy and scope, in onRequest: before the body is read,
 * let alone parsed (a refused request's connection closes after its answer,
 * the rest of its body unread), and before it is validated: a token of another tenant learns
 * nothing, not even whether its input was valid. Another tenant's resources
 * answer exactly as missing ones do (404). The route and its path
 * parameters are known at onRequest; nothing here needs the body.
 *
 * Every 401 counts against the client's address (a public route's too, as
 * node registration's bad join token). Past WEFT_AUTH_FAILURE_LIMIT, until
 * the window closes, the address gets 429 with Retry-After instead of every
 * 401, for the operator token (which may be a chosen, guessable string:
 * right and wrong must look alike meanwhile), and on public writes (join
 * tokens). Node credentials and tenant tokens that verify still pass: they
 * are 256 random bits or an ES256 signature, so telling right from wrong
 * helps no guesser, while refusing them would let anyone who shares an
 * address (a NAT, a workload behind its node's address) cut agents and
 * clients off with 30 bad requests a minute.
 */
export const authGuard = fp(
  async (
    app: FastifyInstance,
    opts: Auth,
  ) => {
    app.decorateRequest("principal", null);
    app.decorateRequest("tenant", null);
    const lastToken: LastToken = new WeakMap();
    const { failures } = opts;
    // Callback style: a request whose token and tenant are cached passes without a promise.
    /**
     * A refused request's body is never read: the connection closes after the
     * answer (as Fastify does after a body it could not parse) instead of
     * reading and dropping up to a megabyte to keep it alive.
     */
    const refuse = (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void, err: unknown) => {
      const { headers } = request;
      if ((headers["content-length"] !== undefined && headers["content-length"] !== "0") || headers["transfer-encoding"] !== undefined) {
        reply.header("connection", "close");
      }
      done(err as Error);
    };
    app.addHook("onRequest", (request, reply, done) => {
      const rule = request.routeOptions.config.auth;
      // Seconds the address must wait, when past its failure limit.
      let wait = 0;
      try {
        if (failures.tracked > 0 && limited(rule, request.method)) wait = failures.retryAfter(request.ip);
        if (wait > 0 && rule?.who === "public") throw tooManyFailures(wait);
        // Plugin routes (the docs page) declare nothing and are public; an API
        // route that forgot its rule is closed rather than open. A URL that
        // matches no route gets its 404: the route table is public anyway
        // (openapi.json), and a 403 would send the caller after its token.
        // The 404 is answered here, or Fastify would read and parse the body
        // of a request no route takes before its not-found handler.
        if (!rule) {
          if (request.is404) throw noRoute(request);
          if (request.url.startsWith("/v1/")) throw forbidden("route has no access rule");
          return done();
        }
        if (rule.who === "public") return done();
        const principal = authenticate(request, opts, lastToken);
        const admit = (p: Principal) => {
          if (wait > 0 && p.kind === "operator") throw tooManyFailures(wait);
          return authorize(request, rule, p, opts);
        };
        const outcome = isPromise(principal) ? principal.then(admit) : admit(principal);
        if (isPromise(outcome)) outcome.then(() => done(), (err: unknown) => refuse(request, reply, done, limitedError(err, wait)));
        else done();
      } catch (err) {
        refuse(request, reply, done, limitedError(err, wait));
      }
    });
  },
  { name: "weft-auth" },
);

/** The resolved tenant of a tenant route; the guard guarantees it past validation. */
export function tenantOf(request: FastifyRequest): TenantDbRow {
  if (!request.tenant) throw notFound(`tenant "${(request.params as { tenant?: string }).tenant}"`);
  return request.tenant;
}
