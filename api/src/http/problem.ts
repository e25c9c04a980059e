import { Type, type Static } from "@sinclair/typebox";

export const FieldError = Type.Object({
  field: Type.String({ description: "Where the bad value is, e.g. body.name or query.limit" }),
  message: Type.String(),
});
export type FieldError = Static<typeof FieldError>;

/** RFC 9457 problem details, with one entry per bad field. */
export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.Optional(Type.String()),
    instance: Type.Optional(Type.String()),
    requestId: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(FieldError)),
  },
  { $id: "Problem", additionalProperties: true },
);
export type Problem = Static<typeof Problem>;

export const PROBLEM_CONTENT_TYPE = "application/problem+json";

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  406: "Not Acceptable",
  409: "Conflict",
  410: "Gone",
  412: "Precondition Failed",
  413: "Content Too Large",
  414: "URI Too Long",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  428: "Precondition Required",
  429: "Too Many Requests",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** An error that a route throws to answer with a problem document. */
export class HttpProblem extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
    readonly errors?: FieldError[],
    readonly headers: Record<string, string> = {},
  ) {
    super(detail);
  }
}

export const badRequest = (detail: string, errors?: FieldError[]) => new HttpProblem(400, detail, errors);
export const notFound = (what: string) => new HttpProblem(404, `${what} not found`);
export const forbidden = (detail: string) => new HttpProblem(403, detail);
/** `error` null: the request carried no credentials, and RFC 6750 (3.1) wants a bare challenge then. */
export const unauthorized = (detail: string, error: "invalid_token" | null = "invalid_token") =>
  new HttpProblem(401, detail, undefined, {
    "www-authenticate":
      error === null
        ? `Bearer realm="weft"`
        : `Bearer realm="weft", error="${error}", error_description="${detail.replace(/"/g, "'")}"`,
  });

export function problemBody(status: number, detail: string | undefined, extra: Partial<Problem> = {}): Problem {
  const title = TITLES[status] ?? (status >= 500 ? "Server Error" : "Client Error");
  return {
    type: `urn:weft:problem:${title.toLowerCase().replace(/[^a-z]+/g, "-")}`,
    title,
    status,
    ...(detail === undefined ? {} : { detail }),
    ...extra,
  };
}

/** A problem about one field of the request, e.g. 422 body.node "no such node". */
export const fieldProblem = (status: number, detail: string, field: string, message: string) =>
  new HttpProblem(status, detail, [{ field, message }]);
