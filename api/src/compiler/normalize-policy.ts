/**
 * Deny precedence for a most-specific-hit datapath (bpf/README.md, "Policy
 * lookup"): the rewrite every policy entry set goes through before it is
 * written.
 *
 * Deny beats allow whatever the specificity, but the datapath takes the most
 * specific hit. This rewrite makes the two agree: for every allow A and deny D
 * that a packet could both match, the entry at their meet (fieldwise the more
 * specific of each) is a deny. The meet is at least as specific as A in every
 * field, so the datapath's lexicographic probe reaches it no later than A; a
 * packet whose most specific hit were an allow A while some deny D matched it
 * would then have hit meet(A, D) first, a contradiction.
 */
import { constants, encodeEntries, type Entry, type PolicyAction, type PolicyKey } from "@weft/codec";

type PolicyEntry = Entry<"policy">;

const ACTION_RANK: Record<PolicyAction, number> = { deny: 3, allow: 2, "default-deny": 1 };
/** An allow with mtls outranks a plaintext one at the same key (and stays below a deny). */
const rankOf = (v: PolicyEntry["value"]): number => ACTION_RANK[v.action] + (v.mtls === true ? 0.5 : 0);
const DIRECTION_ORDER = { ingress: constants.DIR_INGRESS, egress: constants.DIR_EGRESS };

const groupKey = (k: PolicyKey): string => `${k.localIdentity}/${k.direction}`;
const entryKey = (k: PolicyKey): string => `${k.localIdentity}/${k.direction}/${k.remoteIdentity}/${k.port}/${k.protocol}`;

/** The more specific of two key fields (0 = any), or null when they exclude each other. */
const meet = (a: number, b: number): number | null => (a === 0 ? b : b === 0 || a === b ? a : null);
const covers = (d: PolicyKey, k: PolicyKey): boolean =>
  (d.remoteIdentity === 0 || d.remoteIdentity === k.remoteIdentity) &&
  (d.port === 0 || d.port === k.port) &&
  (d.protocol === 0 || d.protocol === k.protocol);
/** The datapath's probe level: lower is more specific. */
const level = (k: PolicyKey): number => (k.remoteIdentity === 0 ? 4 : 0) + (k.port === 0 ? 2 : 0) + (k.protocol === 0 ? 1 : 0);

/**
 * Rewrites policy entries so the datapath's "most specific hit wins" lookup
 * gives deny precedence: wherever an allow and a deny overlap, their meet is
 * written as a deny, carrying the rule id of the most specific deny rule
 * that covers it (ties: the lower id). Duplicate keys merge (deny > allow >
 * default-deny; among allows one with mtls first, so two rules at one key
 * never let plaintext past the one that asks for the transport; then the
 * lower rule id).
 * "default-deny" is the marker of a workload some policy selects in that
 * direction and must sit at (any peer, any port, any protocol). A direction
 * with any entry is selected: when nothing sits at that key, the marker is
 * added, so the datapath can tell an unselected direction by one probe
 * there. The output is sorted by key, so equal inputs give equal outputs.
 * Validates like encodeEntries.
 */
export function normalizePolicy(entries: readonly PolicyEntry[]): PolicyEntry[] {
  // Validate every entry exactly as encoding would, so bad input fails here.
  encodeEntries("policy", entries);
  const byKey = new Map<string, PolicyEntry>();
  for (const { key, value } of entries) {
    if (value.action === "default-deny" && (key.remoteIdentity !== 0 || key.port !== 0 || key.protocol !== 0)) {
      throw new Error(`invalid policy entry: default-deny belongs at (any peer, any port, any protocol), not ${entryKey(key)}`);
    }
    const id = entryKey(key);
    const had = byKey.get(id);
    const rank = rankOf(value);
    if (had === undefined || rank > rankOf(had.value) || (rank === rankOf(had.value) && value.ruleId < had.value.ruleId)) {
      byKey.set(id, { key: { ...key }, value: { ...value } });
    }
  }
  // A selected direction always has an entry at (any, any, any): the
  // datapath probes that key to tell an unselected direction at once.
  for (const e of [...byKey.values()]) {
    const selection = { ...e.key, remoteIdentity: 0, port: 0, protocol: 0 };
    const id = entryKey(selection);
    if (!byKey.has(id)) byKey.set(id, { key: selection, value: { action: "default-deny", ruleId: 0 } });
  }
  const groups = new Map<string, { allows: PolicyEntry[]; denies: PolicyEntry[] }>();
  for (const e of byKey.values()) {
    const g = groupKey(e.key);
    let list = groups.get(g);
    if (list === undefined) groups.set(g, (list = { allows: [], denies: [] }));
    if (e.value.action === "allow") list.allows.push(e);
    else if (e.value.action === "deny") list.denies.push(e);
  }
  for (const { allows, denies } of groups.values()) {
    // Close the denies under "meet with an original allow": the least such
    // set is unique, so the result does not depend on input order and
    // normalising twice changes nothing.
    const derived: PolicyEntry[] = [];
    const queue = [...denies];
    for (let d = queue.pop(); d !== undefined; d = queue.pop()) {
      for (const a of allows) {
        const remote = meet(a.key.remoteIdentity, d.key.remoteIdentity);
        const port = meet(a.key.port, d.key.port);
        const protocol = meet(a.key.protocol, d.key.protocol);
        if (remote === null || port === null || protocol === null) continue;
        const key = { ...a.key, remoteIdentity: remote, port, protocol };
        const id = entryKey(key);
        const had = byKey.get(id);
        if (had !== undefined && had.value.action === "deny") continue;
        const added: PolicyEntry = { key, value: { action: "deny", ruleId: d.value.ruleId } };
        byKey.set(id, added);
        derived.push(added);
        queue.push(added);
      }
    }
    // A derived deny names the most specific written deny that covers it
    // (ties: the lower rule id), whatever order the closure ran in.
    for (const e of derived) {
      let best: PolicyEntry | undefined;
      for (const d of denies) {
        if (!covers(d.key, e.key)) continue;
        if (best === undefined || level(d.key) < level(best.key) || (level(d.key) === level(best.key) && d.value.ruleId < best.value.ruleId)) best = d;
      }
      e.value.ruleId = best!.value.ruleId;
    }
  }
  const order = (a: PolicyEntry, b: PolicyEntry): number =>
    a.key.localIdentity - b.key.localIdentity ||
    DIRECTION_ORDER[a.key.direction] - DIRECTION_ORDER[b.key.direction] ||
    a.key.remoteIdentity - b.key.remoteIdentity ||
    a.key.port - b.key.port ||
    a.key.protocol - b.key.protocol;
  return [...byKey.values()].sort(order);
}
