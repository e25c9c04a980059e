/**
 * A node's L7 document with its ETag, as GET /v1/nodes/{node}/l7 answers it
 * and GET /v1/nodes/{node} compares the proxy's reported ETag against.
 * Compiled from the rows the follower holds (compiler/l7.ts).
 */
import type { L7Config } from "../../compiler/index.ts";
import type { DatapathReader } from "../../follower/follow.ts";
import { contentEtag, notModified } from "../../http/conventions.ts";

export interface L7Answer {
  document: L7Config;
  etag: string;
}

type Follower = Pick<DatapathReader, "refresh" | "settle" | "l7Document"> & { readonly appliedRevision: number };

/**
 * The follower's rows change only when it applies a revision, so a node's
 * answer holds until the next one: agents poll this document every few
 * seconds, and an unchanged one costs a lookup, not a compile and a digest.
 */
const answers = new WeakMap<Follower, Map<string, { revision: number; answer: L7Answer | null }>>();

/** The node's answer at the follower's applied revision: no database read. */
function answerNow(follower: Follower, node: string): L7Answer | null {
  const revision = follower.appliedRevision;
  const byNode = answers.get(follower) ?? new Map<string, { revision: number; answer: L7Answer | null }>();
  answers.set(follower, byNode);
  const cached = byNode.get(node);
  if (cached && cached.revision === revision) return cached.answer;
  const document = follower.l7Document(node);
  const answer = document === null ? null : { document, etag: contentEtag(JSON.stringify(document)) };
  byNode.set(node, { revision, answer });
  return answer;
}

/**
 * Null: the node is unknown, or has no pod block yet (no proxy address).
 * With `ifNoneMatch` (an agent's poll), as the datapath poll does: no
 * database read while the change feed has announced nothing newer and the
 * document is unchanged; anything else first reads the newest revision.
 */
export async function l7Answer(follower: Follower, node: string, ifNoneMatch?: string): Promise<L7Answer | null> {
  if (ifNoneMatch !== undefined) {
    await follower.settle();
    const settled = answerNow(follower, node);
    if (settled !== null && notModified(settled.etag, ifNoneMatch)) return settled;
  }
  await follower.refresh();
  return answerNow(follower, node);
}
