import { Type } from "@sinclair/typebox";
import { PROBLEM_CONTENT_TYPE } from "../http/problem.ts";

const DESCRIPTIONS: Record<number, string> = {
  400: "Invalid input; `errors` names each bad field",
  401: "No token, or a bad, expired or revoked one",
  403: "The token lacks the scope this route needs",
  404: "Not found (also: another tenant's resource)",
  409: "Conflicts with an existing resource",
  410: "Gone",
  412: "If-Match or If-None-Match failed",
  422: "Valid shape, but refused (e.g. capacity)",
  503: "A dependency is unavailable",
};

/** Response entries for the problem statuses a route can answer, as application/problem+json. */
export function problemResponses(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((s) => [
      s,
      {
        description: DESCRIPTIONS[s] ?? "Problem",
        content: { [PROBLEM_CONTENT_TYPE]: { schema: Type.Ref("Problem") } },
      },
    ]),
  ) as Record<number, { description: string; content: Record<string, { schema: ReturnType<typeof Type.Ref> }> }>;
}

/** Bodiless answers: declared without a type so that nothing (not even `null`) is serialized. */
export const NotModified = Type.Unsafe<undefined>({ description: "Not Modified: If-None-Match matched the current ETag" });
export const NoContent = Type.Unsafe<undefined>({ description: "No Content" });
