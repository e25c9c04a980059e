import { Type } from "@sinclair/typebox";

/** Response entries for the problem statuses a route can answer, for the OpenAPI document. */
export function problemResponses(...statuses: number[]) {
  return Object.fromEntries(
    statuses.map((s) => [s, Type.Ref("Problem", { description: "application/problem+json" })]),
  ) as Record<number, ReturnType<typeof Type.Ref>>;
}
