// Field-level input errors. The API turns a CaInputError into a 400
// application/problem+json whose `errors` array is exactly `errors` here, so
// every message must make sense to the caller without reading our code.

export interface FieldError {
  /** The request field at fault, e.g. "path", "trustDomain", "csr", "audience". */
  field: string;
  message: string;
}

export class CaInputError extends Error {
  override name = "CaInputError";
  constructor(readonly errors: readonly FieldError[]) {
    super(errors.map((e) => `${e.field}: ${e.message}`).join("; "));
  }
}

/** Throws a CaInputError for a non-empty list; used where a caller wants exceptions. */
export function throwIfAny(errors: readonly FieldError[]): void {
  if (errors.length > 0) throw new CaInputError(errors);
}

/**
 * A state conflict (prepare with a CA already prepared, activate with none):
 * the API answers 409.
 */
export class CaStateError extends Error {
  override name = "CaStateError";
  constructor(
    readonly code: "already_prepared" | "nothing_prepared" | "no_active_authority",
    message: string,
  ) {
    super(message);
  }
}
