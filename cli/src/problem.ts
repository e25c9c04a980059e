/**
 * An API refusal as people read it: the problem+json's title and detail on
 * one line, then one line per field error (`spec.ports[0].port: must be <=
 * 65535`), then the request id to quote in a bug report.
 */
import { CommandError } from "./errors.ts";

export interface Problem {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  requestId?: string;
  errors?: { field: string; message: string }[];
}

export class ApiError extends CommandError {
  constructor(
    readonly status: number,
    readonly problem: Problem | null,
    message: string,
    details: string[],
  ) {
    super(message, details);
  }
}

/**
 * `field` rewrites each error's field for the reader: apply maps the API's
 * `body.` onto `spec.`, the part of the document the user wrote.
 */
export function apiError(status: number, body: string, contentType: string, field: (f: string) => string = indexed): ApiError {
  const problem = contentType.includes("json") ? parseProblem(body) : null;
  if (!problem) {
    const text = body.trim().slice(0, 300);
    return new ApiError(status, null, `HTTP ${status}${text ? `: ${text}` : ""}`, []);
  }
  const head = `${problem.title ?? "HTTP error"} (${problem.status ?? status})`;
  const message = problem.detail && problem.detail !== problem.title ? `${head}: ${problem.detail}` : head;
  const details = (problem.errors ?? []).map((e) => `${field(e.field)}: ${e.message}`);
  if (problem.requestId) details.push(`request id: ${problem.requestId}`);
  return new ApiError(status, problem, message, details);
}

function parseProblem(body: string): Problem | null {
  try {
    const parsed = JSON.parse(body) as unknown;
    return parsed && typeof parsed === "object" && !Array.isArray(parsed) ? (parsed as Problem) : null;
  } catch {
    return null;
  }
}

/** `ports.0.port` as the reader writes it: `ports[0].port`. */
export const indexed = (field: string): string => field.replace(/\.(\d+)(?=\.|\[|$)/g, "[$1]");

/** The API's `body.x` is the document's `spec.x`; other fields (query, params, headers) stay as they are. */
export const specField = (field: string): string => indexed(field === "body" ? "spec" : field.replace(/^body([.[])/, "spec$1"));
