/**
 * A node's transport document with its ETag, as GET /v1/nodes/{node}/transport
 * answers it: compiled from the node's steer entries and the rows the
 * follower holds (follower/transport-rows.ts, mesh/transport.ts).
 */
import type { DatapathReader } from "../../follower/follow.ts";
import { nodeDocumentAnswers, type DocumentFollower } from "../node-documents.ts";

/**
 * Null: the node is unknown. `ifNoneMatch`: an agent's poll, answered
 * without a database read while nothing changed.
 */
export const transportAnswer = nodeDocumentAnswers((follower: DocumentFollower & Pick<DatapathReader, "transportDocument">, node) => follower.transportDocument(node));
