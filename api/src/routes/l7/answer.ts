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

/** Null: the node is unknown, or has no pod block yet (no proxy address). */
export async function l7Answer(follower: Pick<DatapathReader, "l7Document">, node: string): Promise<L7Answer | null> {
  const document = await follower.l7Document(node);
  return document === null ? null : { document, etag: contentEtag(JSON.stringify(document)) };
}
