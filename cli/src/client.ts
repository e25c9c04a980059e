/**
 * The one way the CLI talks to the API: a Route from routes.ts, its path
 * parameters, a query of the names the route declares, a JSON body. Answers
 * of 400 and above turn into ApiError unless the caller expects them.
 */
import { CommandError } from "./errors.ts";
import { apiError, type ApiError } from "./problem.ts";
import { fillPath, type Route } from "./routes.ts";

export interface Connection {
  endpoint: string;
  token: string;
}

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
}

export interface CallOptions {
  params?: Record<string, string>;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Statuses >= 400 the caller handles itself (e.g. 404 before a create). */
  expect?: number[];
  /** Rewrites field names in a refusal (see problem.ts specField). */
  field?: (f: string) => string;
  signal?: AbortSignal;
}

const TIMEOUT_MS = 30_000;

export function urlFor(conn: Connection, route: Route, opts: Pick<CallOptions, "params" | "query">): string {
  const url = new URL(conn.endpoint + fillPath(route, opts.params ?? {}));
  for (const [k, v] of Object.entries(opts.query ?? {})) {
    if (v === undefined) continue;
    if (!route.query?.includes(k)) throw new Error(`${route.method} ${route.path} takes no query parameter "${k}"`);
    url.searchParams.set(k, String(v));
  }
  return url.toString();
}

/** Sends the request; network failures become a command error naming the endpoint. */
export async function send(conn: Connection, route: Route, opts: CallOptions = {}, accept = "application/json"): Promise<Response> {
  const headers: Record<string, string> = { accept, authorization: `Bearer ${conn.token}`, ...opts.headers };
  let body: string | undefined;
  if (opts.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  try {
    return await fetch(urlFor(conn, route, opts), {
      method: route.method,
      headers,
      body,
      redirect: "error",
      signal: opts.signal ?? AbortSignal.timeout(TIMEOUT_MS),
    });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const why = e.name === "TimeoutError" ? `no answer within ${TIMEOUT_MS / 1000} s` : (e.cause?.code ?? e.cause?.message ?? e.message);
    // Node trusts its bundled CA roots only: a private CA has to be named.
    const hint = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(why) ? " (if the API's certificate is from a private CA: NODE_EXTRA_CA_CERTS=ca.pem weft ...)" : "";
    throw new CommandError(`cannot reach the API at ${conn.endpoint}: ${why}${hint}`);
  }
}

export async function call(conn: Connection, route: Route, opts: CallOptions = {}): Promise<Answer> {
  const res = await send(conn, route, opts);
  const text = await res.text();
  if (res.status >= 400 && !opts.expect?.includes(res.status)) throw refusal(res, text, opts.field);
  return { status: res.status, headers: res.headers, text };
}

export function refusal(res: Response, text: string, field?: (f: string) => string): ApiError {
  return apiError(res.status, text, res.headers.get("content-type") ?? "", field);
}

/** The answer's JSON body; an answer that is not JSON is the API's fault, said as such. */
export function json<T = unknown>(answer: Answer): T {
  try {
    return JSON.parse(answer.text) as T;
  } catch {
    throw new CommandError(`the API answered ${answer.status} with a body that is not JSON: ${answer.text.slice(0, 200)}`);
  }
}

const PAGE_SIZE = 500;

/** Every item of a paged list ({items, nextCursor}), page after page. */
export async function* listAll<T = Record<string, unknown>>(
  conn: Connection,
  route: Route,
  opts: Pick<CallOptions, "params" | "query"> = {},
): AsyncGenerator<T> {
  let cursor: string | undefined;
  do {
    const page = json<{ items: T[]; nextCursor?: string | null }>(
      await call(conn, route, { ...opts, query: { ...opts.query, limit: opts.query?.limit ?? PAGE_SIZE, cursor } }),
    );
    if (!Array.isArray(page.items)) throw new CommandError(`${route.method} ${route.path} answered a page without items`);
    yield* page.items;
    cursor = page.nextCursor ?? undefined;
  } while (cursor);
}
