/**
 * The datapath route's response bodies, encoded once and shared.
 *
 * When one write wakes 1,000 long polls, every one of them answers within
 * the same moment; encoding each answer per request (the schema serializer
 * validates a union branch over every entry) cost more than the compile.
 * So bodies are Buffers, sent past the serializer, and remembered:
 *  - a full state, for each node's last asked state (NodeBodies): built from
 *    per-part JSON fragments (kept while the part lives), so a part held by
 *    every node (a tenant's addresses) is stringified once;
 *  - a binary dump, likewise (NodeBodies);
 *  - a delta, per delta object (the service computes one per base and newest
 *    state, shared by every poll asking for it).
 * Encoding is synchronous, so concurrent requests cannot build the same body
 * twice: the first builds it, the rest find it.
 */
import { DATAPATH_MAPS, type DatapathMap, type NodeDatapath, type Part } from "../../compiler/index.ts";
import type { NodeDelta, NodeState } from "../../follower/history.ts";
import { encodeMaps } from "./binary.ts";

/** Per part, per map: its entries as JSON array elements, without the brackets; kept while the part lives. */
const fragments = new WeakMap<Part, Partial<Record<DatapathMap, Buffer>>>();
/** Per delta object: the service keeps one per (base, newest) pair while that state is the newest. */
const deltaBodies = new WeakMap<NodeDelta, Buffer>();

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
 * owner's entries in key order), put together from the parts' fragments.
 */
export function encodeFull(state: NodeState): Buffer {
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
  return Buffer.concat(chunks);
}

/** {revision, hash, upserts, deletes}, encoded once per delta object. */
export function deltaJson(answer: NodeDelta): Buffer {
  let body = deltaBodies.get(answer);
  if (body === undefined) {
    const { revision, hash, delta } = answer;
    body = Buffer.from(JSON.stringify({ revision, hash, upserts: delta.upserts, deletes: delta.deletes }));
    deltaBodies.set(answer, body);
  }
  return body;
}

/**
 * Full and binary bodies of one app, one per node: the last state asked
 * for. A node's history keeps up to 64 states, and a body per state would
 * hold 64 copies of its maps; its pollers all ask for the newest anyway.
 */
export class NodeBodies {
  private readonly full = new Map<string, { datapath: NodeDatapath; revision: number; body: Buffer }>();
  private readonly binary = new Map<string, { datapath: NodeDatapath; body: Buffer }>();

  fullJson(state: NodeState): Buffer {
    const { revision, datapath } = state;
    const had = this.full.get(datapath.node);
    if (had !== undefined && had.datapath === datapath && had.revision === revision) return had.body;
    const body = encodeFull(state);
    this.full.set(datapath.node, { datapath, revision, body });
    return body;
  }

  /** The codec's bytes for every map of the state (see binary.ts). */
  binaryBody(datapath: NodeDatapath): Buffer {
    const had = this.binary.get(datapath.node);
    if (had !== undefined && had.datapath === datapath) return had.body;
    const body = encodeMaps(datapath.maps);
    this.binary.set(datapath.node, { datapath, body });
    return body;
  }

  /** A node the service no longer knows (deleted): its bodies go too. */
  forget(node: string): void {
    this.full.delete(node);
    this.binary.delete(node);
  }
}
