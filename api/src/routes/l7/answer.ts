/**
 * A node's L7 document with its ETag, as GET /v1/nodes/{node}/l7 answers it
 * and GET /v1/nodes/{node} compares the proxy's reported ETag against.
 * Compiled from the rows the follower holds (compiler/l7.ts): no query per
 * request beyond the follower's refresh.
 */
import type { L7Config } from "../../compiler/index.ts";
import type { DatapathReader } from "../../follower/follow.ts";
import { contentEtag } from "../../http/conventions.ts";

export interface L7Answer {
  document: L7Config;
  etag: string;
}

type Follower = Pick<DatapathReader, "refresh" | "l7Document"> & { readonly appliedRevision: number };

/**
 * The follower's rows change only when it applies a revision, so a node's
 * answer holds until the next one: agents poll this document every few
 * seconds, and an unchanged one costs a lookup, not a compile and a digest.
 */
const answers = new WeakMap<Follower, Map<string, { revision: number; answer: L7Answer | null }>>();

/** Null: the node is unknown, or has no pod block yet (no proxy address). */
export async function l7Answer(follower: Follower, node: string): Promise<L7Answer | null> {
  await follower.refresh();
  const revision = follower.appliedRevision;
  const byNode = answers.get(follower) ?? new Map<string, { revision: number; answer: L7Answer | null }>();
  answers.set(follower, byNode);
  const cached = byNode.get(node);
  if (cached && cached.revision === revision) return cached.answer;
  // Compiled at this revision or a newer one: a newer one is recompiled by the next request that sees it.
  const compiled = await follower.l7Document(node);
  const answer = compiled === null ? null : { document: compiled, etag: contentEtag(JSON.stringify(compiled)) };
  byNode.set(node, { revision, answer });
  return answer;
}
