/**
 * The datapath route's response bodies, built from shared pieces.
 *
 * When one write wakes 1,000 long polls, every one of them answers within
 * the same moment; encoding each answer per request (the schema serializer
 * validates a union branch over every entry) cost more than the compile.
 * So bodies are Buffers, sent past the serializer, and made of pieces that
 * every node holding the same thing shares:
 *  - a full state is its parts' JSON fragments (kept while the part lives)
 *    between small per-request framing: a part held by every node (a
 *    tenant's 10,000 addresses) is stringified once and never copied per
 *    node, neither in memory nor per request (the pieces go to the socket
 *    as they are);
 *  - a binary dump, likewise, from each part's encoded keys and values;
 *  - a delta, as its revision and hash followed by the JSON of its content,
 *    encoded once per content object (the history shares one content object
 *    between every node that receives the same change).
 */
import { DATAPATH_MAPS, type DatapathDelta, type DatapathMap, type NodeDatapath, type Part } from "../../compiler/index.ts";
import type { NodeDelta, NodeState } from "../../follower/history.ts";
import { binaryFragmentsOf, binaryFraming } from "./binary.ts";

/** Per part, per map: its entries as JSON array elements, without the brackets; kept while the part lives. */
const fragments = new WeakMap<Part, Partial<Record<DatapathMap, Buffer>>>();
/** Per delta content: `"upserts":{...},"deletes":{...}}`, the tail every node receiving that content shares. */
const deltaTails = new WeakMap<DatapathDelta, Buffer>();

const COMMA = Buffer.from(",");
const CLOSE = Buffer.from("]}}");
const openMap = Object.fromEntries(DATAPATH_MAPS.map((m, i) => [m, Buffer.from(`${i === 0 ? "" : "],"}${JSON.stringify(m)}:[`)])) as Record<
  DatapathMap,
  Buffer
>;

function fragmentsOf(part: Part): Partial<Record<DatapathMap, Buffer>> {
  let f = fragments.get(part);
  if (f === undefined) {
    f = {};
    for (const m of DATAPATH_MAPS) {
      const list = part.entries[m];
      if (list !== undefined && list.length > 0) f[m] = Buffer.from(JSON.stringify(list).slice(1, -1));
    }
    fragments.set(part, f);
  }
  return f;
}

/**
 * {revision, hash, maps}: the JSON of the flat maps (owners in order, each
 * owner's entries in key order), as pieces: the parts' shared fragments
 * between a few bytes of framing.
 */
export function fullChunks(state: NodeState): Buffer[] {
  const { revision, datapath } = state;
  const chunks: Buffer[] = [Buffer.from(`{"revision":${revision},"hash":${JSON.stringify(datapath.hash)},"maps":{`)];
  const parts = [...datapath.parts.values()].map(fragmentsOf);
  for (const m of DATAPATH_MAPS) {
    chunks.push(openMap[m]);
    let first = true;
    for (const f of parts) {
      const fragment = f[m];
      if (fragment === undefined) continue;
      if (!first) chunks.push(COMMA);
      chunks.push(fragment);
      first = false;
    }
  }
  chunks.push(CLOSE);
  return chunks;
}

/** The full state as one Buffer (tests and tools; the route sends the pieces). */
export const encodeFull = (state: NodeState): Buffer => Buffer.concat(fullChunks(state));

/** {revision, hash, upserts, deletes}: this node's revision and hash, then the content's shared tail. */
export function deltaChunks(answer: NodeDelta): Buffer[] {
  const { revision, hash, delta } = answer;
  let tail = deltaTails.get(delta);
  if (tail === undefined) {
    tail = Buffer.from(JSON.stringify({ upserts: delta.upserts, deletes: delta.deletes }).slice(1));
    deltaTails.set(delta, tail);
  }
  return [Buffer.from(`{"revision":${revision},"hash":${JSON.stringify(hash)},`), tail];
}

/**
 * A held `since` poll that timed out: the node's revision and hash and an
 * empty delta. Sent like any other delta rather than through the schema
 * serializer: a union's serializer validates which branch an object is, and
 * compiles that validator at its first use: the first timed-out poll took
 * 60 ms more than the next in process on a quiet machine, and a loaded
 * replica's profile held 0.3 s of that compile in one stretch.
 */
const NO_CHANGE: DatapathDelta = {
  upserts: Object.fromEntries(DATAPATH_MAPS.map((m) => [m, []])) as unknown as DatapathDelta["upserts"],
  deletes: Object.fromEntries(DATAPATH_MAPS.map((m) => [m, []])) as unknown as DatapathDelta["deletes"],
};
export const emptyDeltaChunks = (state: NodeState): Buffer[] => deltaChunks({ revision: state.revision, hash: state.datapath.hash, delta: NO_CHANGE });

/** The codec's bytes for every map of the state (see binary.ts), as pieces: each part's keys and values are encoded once. */
export function binaryChunks(datapath: NodeDatapath): Buffer[] {
  return binaryFraming([...datapath.parts.values()].map(binaryFragmentsOf));
}
