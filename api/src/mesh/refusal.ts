/**
 * Why the mesh refuses: a kind, a sentence for the caller, and the fields at
 * fault when there are some. The domain's answer, not HTTP's: the HTTP layer
 * answers each kind with its status and problem document
 * (http/error-handler.ts, problemOfRefusal).
 */

export type RefusalKind =
  /** The input breaks a rule of its shape the schema cannot state (a port listed twice): 400. */
  | "malformed"
  /** A credential in the input is not valid (a spent join token): 401. */
  | "unauthorized"
  /** The caller may not make this change (a node writing another node's workload): 403. */
  | "forbidden"
  /** What the request names does not exist, or is not the caller's to see: 404. */
  | "not-found"
  /** It clashes with what is stored (a taken address, a name registered twice): 409. */
  | "conflict"
  /** The caller's If-Match or If-None-Match does not hold (preconditions.ts): 412. */
  | "precondition-failed"
  /** Well-formed, but it names what does not exist or breaks a rule of the mesh (a node's capacity): 422. */
  | "invalid"
  /** A shared pool is used up (no free pod CIDR block): 503. */
  | "unavailable";

/** One bad field, named as the caller wrote it, e.g. body.addresses.0. */
export interface FieldError {
  field: string;
  message: string;
}

export class MeshRefusal extends Error {
  override name = "MeshRefusal";
  constructor(
    readonly kind: RefusalKind,
    readonly detail: string,
    readonly errors?: FieldError[],
  ) {
    super(detail);
  }
}

/** A refusal about one field, e.g. invalid: body.node "no node "n1" is registered". */
export const fieldRefusal = (kind: RefusalKind, detail: string, field: string, message: string) =>
  new MeshRefusal(kind, detail, [{ field, message }]);

export const notFound = (what: string) => new MeshRefusal("not-found", `${what} not found`);
