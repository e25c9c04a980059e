// The CA library's errors as HTTP problems: CaInputError -> 400 with its
// field errors placed in the request body, CaStateError -> 409, a signing
// pool that lost its worker or is shutting down -> 503 (retry).
import { CaInputError, CaStateError } from "../../ca/errors.ts";
import { SigningUnavailableError } from "../../ca/signing-pool.ts";
import { HttpProblem } from "../../http/problem.ts";

export async function caCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CaInputError) {
      const errors = err.errors.map((e) => ({ field: `body.${e.field}`, message: e.message }));
      throw new HttpProblem(400, `invalid request: ${errors.map((e) => e.field).join(", ")}`, errors);
    }
    if (err instanceof CaStateError) throw new HttpProblem(409, err.message);
    if (err instanceof SigningUnavailableError) throw new HttpProblem(503, err.message, undefined, { "retry-after": "1" });
    throw err;
  }
}
