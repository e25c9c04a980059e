/**
 * A node's document compiled from the rows the follower holds (the L7
 * document, the transport document), with its ETag, as agents poll it.
 *
 * The follower's rows change only when it applies a revision, so a node's
 * answer holds until the next one: agents poll these documents every few
 * seconds, and an unchanged one costs a lookup, not a compile and a digest.
 * Every input of a document is a row the change log announces (a CA
 * rotation and a node's transport endpoint included), so the applied
 * revision is the whole cache key besides the node.
 */
import type { DatapathReader } from "../follower/follow.ts";
import { contentEtag, notModified } from "../http/conventions.ts";

export interface DocumentAnswer<D> {
  document: D;
  etag: string;
}

export type DocumentFollower = Pick<DatapathReader, "refresh" | "settle"> & { readonly appliedRevision: number };

/**
 * The answer function for one kind of document; `compile` reads the
 * follower's memory only (null: no document for that node, the route's 404).
 */
export function nodeDocumentAnswers<F extends DocumentFollower, D>(compile: (follower: F, node: string) => D | null) {
  const answers = new WeakMap<F, Map<string, { revision: number; answer: DocumentAnswer<D> }>>();

  /** The node's answer at the follower's applied revision: no database read. */
  const answerNow = (follower: F, node: string): DocumentAnswer<D> | null => {
    const revision = follower.appliedRevision;
    let byNode = answers.get(follower);
    if (byNode === undefined) answers.set(follower, (byNode = new Map()));
    const cached = byNode.get(node);
    if (cached && cached.revision === revision) return cached.answer;
    const document = compile(follower, node);
    if (document === null) {
      // Not kept: any name may be asked for (the operator may read every node's), and an unknown one costs no compile.
      byNode.delete(node);
      return null;
    }
    const answer = { document, etag: contentEtag(JSON.stringify(document)) };
    byNode.set(node, { revision, answer });
    return answer;
  };

  /**
   * With `ifNoneMatch` (an agent's poll), as the datapath poll does: no
   * database read while the change feed has announced nothing newer and the
   * document is unchanged; anything else first reads the newest revision.
   */
  return async (follower: F, node: string, ifNoneMatch?: string): Promise<DocumentAnswer<D> | null> => {
    if (ifNoneMatch !== undefined) {
      await follower.settle();
      const settled = answerNow(follower, node);
      if (settled !== null && notModified(settled.etag, ifNoneMatch)) return settled;
    }
    await follower.refresh();
    return answerNow(follower, node);
  };
}
