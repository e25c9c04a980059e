import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { FORMATS } from "./schemas.ts";
import { HttpProblem, PROBLEM_CONTENT_TYPE, problemBody, type FieldError } from "./problem.ts";

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
  return undefined;
}

function send(reply: FastifyReply, request: FastifyRequest, problem: HttpProblem): FastifyReply {
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

/** Every error leaves as application/problem+json; a 5xx never shows its message. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError & { cause?: unknown }, request, reply) => {
    if (err instanceof HttpProblem) return send(reply, request, err);
    if (err.validation) {
      const errors = fieldErrors(err.validationContext ?? "body", err.validation as AjvError[]);
      return send(reply, request, new HttpProblem(400, `invalid request: ${errors.map((e) => e.field).join(", ")}`, errors));
    }
    const fromPg = pgProblem(err) ?? (err.cause instanceof Error ? pgProblem(err.cause as Error & { code?: unknown }) : undefined);
    if (fromPg) return send(reply, request, fromPg);
    const status = err.statusCode ?? 500;
    if (status >= 400 && status < 500) return send(reply, request, new HttpProblem(status, err.message));
    request.log.error({ err }, "request failed");
    return send(reply, request, new HttpProblem(500, "internal error; the request id identifies it in the logs"));
  });
  app.setNotFoundHandler((request, reply) =>
    send(reply, request, new HttpProblem(404, `no route for ${request.method} ${request.url.split("?")[0]}`)),
  );
}
