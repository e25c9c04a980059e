/**
 * The provider's HTTP edge: a ProviderContext that talks to one Weft
 * endpoint with one bearer token, and reading its answers.
 */
import { readFileSync } from "node:fs";
import { Agent, fetch as undiciFetch } from "undici";
import type { ProviderContext } from "../framework.ts";

const VERSION = (JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as { version: string }).version;

/** Names the provider in the API's request logs. */
export const USER_AGENT = `terraform-provider-weft/${VERSION}`;

/** A request that has not answered by then is abandoned, so a hung API fails the run instead of hanging it. */
export const REQUEST_TIMEOUT_MS = 60_000;

/** fetch trusting only caPem for https (the operator CA), or Node's own fetch (the system's roots). */
function fetchTrusting(caPem: string | null): typeof fetch {
  if (caPem === null) return fetch;
  const dispatcher = new Agent({ connect: { ca: caPem } });
  return ((input: string, init?: RequestInit) => undiciFetch(input, { ...(init as object), dispatcher })) as unknown as typeof fetch;
}

export function weftContext(endpoint: string, token: string | null, caPem: string | null = null): ProviderContext {
  const base = endpoint.replace(/\/+$/, "");
  const fetchApi = fetchTrusting(caPem);
  return {
    endpoint: base,
    token,
    request(method, path, init = {}) {
      const headers: Record<string, string> = {
        accept: "application/json, application/problem+json",
        "user-agent": USER_AGENT,
        ...(token === null ? {} : { authorization: `Bearer ${token}` }),
        ...(init.body === undefined ? {} : { "content-type": "application/json" }),
        ...init.headers,
      };
      return fetchApi(`${base}${path}`, {
        method,
        headers,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
      });
    },
  };
}

/** What to do when TLS refused the API's certificate (Node's codes for a chain or name that does not verify). */
function certificateHint(cause: Error): string {
  const code = (cause as { code?: string }).code ?? "";
  return /CERT|SELF_SIGNED|UNABLE_TO_(VERIFY|GET_ISSUER)/.test(code)
    ? ` (${code}): the API's certificate is not trusted; set the provider's ca_file (or ca_pem, or WEFT_CA_FILE) to the operator CA`
    : "";
}

/** An API answer, read whole. Status 0: the request never got an answer (its problem says why). */
export interface Answer {
  status: number;
  body: unknown;
  text: string;
  etag: string | null;
}

export async function send(
  ctx: ProviderContext,
  method: string,
  path: string,
  init?: { body?: unknown; headers?: Record<string, string> },
): Promise<Answer> {
  try {
    const res = await ctx.request(method, path, init).catch((err: unknown) => {
      // A kept-alive connection the API closed as this request went out (its idle timeout): once more, on a new
      // connection, for a method that may be repeated; every Weft PUT and DELETE may.
      if (IDEMPOTENT.has(method) && connectionDropped(err)) return ctx.request(method, path, init);
      throw err;
    });
    const text = await res.text();
    let body: unknown = null;
    if (/json/.test(res.headers.get("content-type") ?? "")) {
      try {
        body = JSON.parse(text);
      } catch {
        body = null;
      }
    }
    return { status: res.status, body, text, etag: res.headers.get("etag") };
  } catch (err) {
    const reason = err instanceof Error ? (err.cause instanceof Error ? `${err.message}: ${err.cause.message}${certificateHint(err.cause)}` : err.message) : String(err);
    return {
      status: 0,
      body: { title: "Cannot reach the Weft API", detail: `${method} ${ctx.endpoint}${path} failed: ${reason}` },
      text: "",
      etag: null,
    };
  }
}

const IDEMPOTENT = new Set(["GET", "HEAD", "PUT", "DELETE"]);

/** undici's word for a connection closed under a request (UND_ERR_SOCKET "other side closed", a reset). */
function connectionDropped(err: unknown): boolean {
  const cause = err instanceof Error ? (err.cause as { code?: string } | undefined) : undefined;
  return cause?.code === "UND_ERR_SOCKET" || cause?.code === "ECONNRESET";
}

export const succeeded = (a: Answer) => a.status >= 200 && a.status < 300;

/** The answer as a problem document, also when the server sent none (a proxy's HTML 502). */
export function problemOf(a: Answer): { title?: string; status?: number; detail?: string; errors?: { field: string; message: string }[] } {
  if (typeof a.body === "object" && a.body !== null && "title" in a.body) return a.body as { title: string };
  return { title: `HTTP ${a.status}`, status: a.status, detail: a.text.slice(0, 500) || `the API answered ${a.status}` };
}
