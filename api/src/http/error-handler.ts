import { STATUS_CODES, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { GroupCommitTimeout } from "../db/group-commit.ts";
import { MeshRefusal, type RefusalKind } from "../mesh/refusal.ts";
import { FORMATS } from "./schemas.ts";
import { HttpProblem, PROBLEM_CONTENT_TYPE, problemBody, unauthorized, type FieldError } from "./problem.ts";

interface AjvError {
  instancePath: string;
  keyword: string;
  message?: string;
  params: Record<string, unknown>;
}

const CONTEXT_NAMES: Record<string, string> = { querystring: "query", params: "path" };

/** One FieldError per ajv error, named as a client would write the field. */
export function fieldErrors(context: string, errors: AjvError[]): FieldError[] {
  const where = CONTEXT_NAMES[context] ?? context;
  return errors.map((e) => {
    let field = where + e.instancePath.replace(/\//g, ".");
    let message = e.message ?? "is invalid";
    if (e.keyword === "required") {
      field += `.${String(e.params.missingProperty)}`;
      message = "is required";
    } else if (e.keyword === "additionalProperties") {
      field += `.${String(e.params.additionalProperty)}`;
      message = "is not a known field";
    } else if (e.keyword === "format") {
      message = FORMATS[String(e.params.format)]?.message ?? message;
    }
    return { field, message };
  });
}

/** Postgres errors that are the client's fault, by SQLSTATE. */
function pgProblem(err: { code?: unknown; message: string }): HttpProblem | undefined {
  if (typeof err.code !== "string") return undefined;
  if (err.code === "23505") return new HttpProblem(409, "a resource with that unique value already exists");
  if (err.code.startsWith("22")) return new HttpProblem(400, "a value is out of range or malformed");
  // lock_not_available: a write's lock_timeout passed (mesh/nodes.ts storeStatuses), the row held by another transaction.
  if (err.code === "55P03") return new HttpProblem(503, "a row this request writes is locked by another transaction; retry shortly", undefined, { "retry-after": "1" });
  return undefined;
}

/**
 * pg-pool's error when no pooled connection freed up within WEFT_DB_POOL_WAIT
 * (db/client.ts), or a group commit's when its write did not return within
 * it (db/group-commit.ts): the database is stuck or the replica overloaded,
 * not the request at fault. drizzle wraps the first, so look at the cause too.
 */
function poolExhausted(err: Error & { cause?: unknown }): boolean {
  const timedOut = (e: unknown) => e instanceof GroupCommitTimeout || (e instanceof Error && e.message === "timeout exceeded when trying to connect");
  return timedOut(err) || timedOut(err.cause);
}

/** The status that answers each kind of the mesh's refusals (mesh/refusal.ts). */
const REFUSAL_STATUS: Record<RefusalKind, number> = {
  malformed: 400,
  unauthorized: 401,
  forbidden: 403,
  "not-found": 404,
  conflict: 409,
  "precondition-failed": 412,
  invalid: 422,
  unavailable: 503,
};

/** A refusal of the mesh as a problem: its status, detail and field errors; a 401 with its Bearer challenge. */
export function problemOfRefusal(refusal: MeshRefusal): HttpProblem {
  if (refusal.kind === "unauthorized") return unauthorized(refusal.detail);
  return new HttpProblem(REFUSAL_STATUS[refusal.kind], refusal.detail, refusal.errors);
}

export interface ErrorHandlingHooks {
  /** Called for every 401 answered, whoever threw it (the guard, or a handler refusing a join token). */
  unauthorized?: (request: FastifyRequest) => void;
}

function send(reply: FastifyReply, request: FastifyRequest, problem: HttpProblem, hooks: ErrorHandlingHooks = {}): FastifyReply {
  if (problem.status === 401) hooks.unauthorized?.(request);
  return reply
    .code(problem.status)
    .headers(problem.headers)
    .type(PROBLEM_CONTENT_TYPE)
    .send(
      problemBody(problem.status, problem.detail, {
        instance: request.url,
        requestId: String(request.id),
        ...(problem.errors ? { errors: problem.errors } : {}),
      }),
    );
}

/** The 404 of a URL no route matches (the guard answers it before any body is read). */
export const noRoute = (request: FastifyRequest): HttpProblem =>
  new HttpProblem(404, `no route for ${request.method} ${request.url.split("?")[0]}`);

/** Every error leaves as application/problem+json; a 5xx never shows its message. */
export function installErrorHandling(app: FastifyInstance, hooks: ErrorHandlingHooks = {}): void {
  app.setErrorHandler((err: FastifyError & { cause?: unknown }, request, reply) => {
    if (err instanceof HttpProblem) return send(reply, request, err, hooks);
    if (err instanceof MeshRefusal) return send(reply, request, problemOfRefusal(err), hooks);
    if (err.validation) {
      const errors = fieldErrors(err.validationContext ?? "body", err.validation as AjvError[]);
      return send(reply, request, new HttpProblem(400, `invalid request: ${errors.map((e) => e.field).join(", ")}`, errors));
    }
    const fromPg = pgProblem(err) ?? (err.cause instanceof Error ? pgProblem(err.cause as Error & { code?: unknown }) : undefined);
    if (fromPg) return send(reply, request, fromPg);
    if (poolExhausted(err)) {
      request.log.warn("no database connection freed up, or no group commit returned, within WEFT_DB_POOL_WAIT");
      return send(reply, request, new HttpProblem(503, "the database is busy; retry shortly", undefined, { "retry-after": "1" }));
    }
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) return send(reply, request, new HttpProblem(status, err.message), hooks);
    request.log.error({ err }, "request failed");
    return send(reply, request, new HttpProblem(500, "internal error; the request id identifies it in the logs"));
  });
  app.setNotFoundHandler((request, reply) => send(reply, request, noRoute(request)));
}

/**
 * Errors Fastify's router raises before any hook runs (a bad percent escape,
 * an over-long path parameter): without this they leave as plain JSON,
 * outside the problem+json contract. A Fastify constructor option.
 */
export function frameworkErrors(err: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const status = err.statusCode !== undefined && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400;
  reply
    .header("x-request-id", request.id)
    .code(status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(problemBody(status, err.message, { instance: request.url, requestId: String(request.id) }));
}

/**
 * What Node's HTTP parser refuses (bad bytes in the request line, conflicting
 * lengths, oversized headers) never reaches Fastify: answer it as a problem
 * too, then close, since the stream cannot be trusted past the error.
 */
export function clientErrorHandler(err: Error & { code?: string }, socket: Socket): void {
  if (err.code === "ECONNRESET" || socket.destroyed) return;
  // A pipelined request still being answered owns the stream: a 400 written
  // now would read as its answer. Let that answer finish, then close.
  const pending = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (pending && !pending.writableFinished) {
    pending.once("close", () => socket.destroy());
    return;
  }
  const status = err.code === "HPE_HEADER_OVERFLOW" ? 431 : err.code === "ERR_HTTP_REQUEST_TIMEOUT" ? 408 : 400;
  const body = JSON.stringify(problemBody(status, "the request could not be parsed as HTTP/1.1"));
  if (socket.writable) {
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${PROBLEM_CONTENT_TYPE}\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy(err);
}
