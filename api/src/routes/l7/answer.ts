/**
 * A node's L7 document with its ETag, as GET /v1/nodes/{node}/l7 answers it
 * and GET /v1/nodes/{node} compares the proxy's reported ETag against.
 * Compiled from the rows the follower holds (compiler/l7.ts).
 */
import type { L7Config } from "../../compiler/index.ts";
import type { DatapathReader } from "../../follower/follow.ts";
import { nodeDocumentAnswers, type DocumentAnswer, type DocumentFollower } from "../node-documents.ts";

export type L7Answer = DocumentAnswer<L7Config>;

/**
 * Null: the node is unknown, or has no pod block yet (no proxy address).
 * `ifNoneMatch`: an agent's poll, answered without a database read while nothing changed.
 */
export const l7Answer = nodeDocumentAnswers((follower: DocumentFollower & Pick<DatapathReader, "l7Document">, node) => follower.l7Document(node));
