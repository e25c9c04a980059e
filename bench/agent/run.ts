/**
 * Agent apply benchmark, one command (as root): npm run bench:agent
 *
 * A 100,000-entry delta (50,000 policy entries and 50,000 lookup-table
 * slots, on top of 10,000 entries already in those maps that stay as they
 * are) applied through the agent's engine: encode the whole desired state
 * with the codec, read the kernel back, diff, batch-write in order. Against
 * it, in the same run and the same pinned maps: raw libbpf
 * bpf_map_update_batch of the same 100,000 entries, encoded beforehand and
 * untimed. Goal: engine >= 0.5x the raw entries/s. Rounds alternate so load
 * from other processes hits both alike; each side reports its median.
 * Both writes go to hash maps: the LPM trie has no batch update in the
 * kernel, so ipcache writes fall back to one syscall per entry either way.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { encodeEntries, protocols, type Entry } from "@weft/codec";
import { ApplyEngine, MANAGED_MAPS, type DesiredEntries } from "../../nodeagent/src/apply/index.ts";
import { BPFFS_ROOT, KernelDatapath, cleanup, ensurePinDir } from "../../nodeagent/src/loader/index.ts";
import { kernelUnavailableReason } from "../../test/support/kernel.ts";

const DELTA_PER_MAP = 50_000;
const BASE_PER_MAP = 5_000;
const ROUNDS = 7;

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function policyEntries(from: number, n: number): Entry<"policy">[] {
  return Array.from({ length: n }, (_, j) => {
    const i = from + j;
    return {
      key: { localIdentity: 1000 + (i % 64), remoteIdentity: 2000 + Math.floor(i / 64), port: 80, protocol: protocols.tcp, direction: "ingress" as const },
      value: { action: "allow" as const, ruleId: i + 1 },
    };
  });
}

function slotEntries(from: number, n: number): Entry<"lb_slot">[] {
  return Array.from({ length: n }, (_, j) => {
    const i = from + j;
    return { key: { tableId: 1 + Math.floor(i / 1024), slot: i % 1024 }, value: { backendId: 1 + (i % 16) } };
  });
}

const reason = kernelUnavailableReason();
if (reason !== null) {
  console.error(`bench:agent needs the kernel: ${reason}`);
  process.exit(1);
}

const pinDir = `/sys/fs/bpf/weft-bench-${process.pid}`;
// A host without bpffs gets it mounted for the run and unmounted after: the bench leaves nothing behind.
const { mounted } = ensurePinDir(pinDir);
const dp = KernelDatapath.load({ pinDir });
try {
  const base: DesiredEntries = { policy: policyEntries(0, BASE_PER_MAP), lb_slot: slotEntries(0, BASE_PER_MAP) };
  const delta = { policy: policyEntries(BASE_PER_MAP, DELTA_PER_MAP), lb_slot: slotEntries(BASE_PER_MAP, DELTA_PER_MAP) };
  const desired: DesiredEntries = { policy: [...base.policy!, ...delta.policy], lb_slot: [...base.lb_slot!, ...delta.lb_slot] };
  const deltaCount = delta.policy.length + delta.lb_slot.length;
  const raw = { policy: encodeEntries("policy", delta.policy), lb_slot: encodeEntries("lb_slot", delta.lb_slot) };

  const engine = new ApplyEngine(dp.maps);
  const reset = () => {
    // Back to the base state; the engine's own diff does it, untimed.
    engine.apply({ ...Object.fromEntries(MANAGED_MAPS.map((m) => [m, []])), ...base });
  };
  const samples = { engine: [] as number[], raw: [] as number[] };
  for (let r = 0; r < ROUNDS + 1; r++) {
    reset();
    const t0 = process.hrtime.bigint();
    const result = engine.apply(desired);
    const engineNs = Number(process.hrtime.bigint() - t0);
    if (result.upserts !== deltaCount || result.deletes !== 0) throw new Error(`engine wrote ${result.upserts}/${result.deletes}, expected ${deltaCount}/0`);

    reset();
    const t1 = process.hrtime.bigint();
    dp.maps.policy.updateBatch(raw.policy.keys, raw.policy.values);
    dp.maps.lb_slot.updateBatch(raw.lb_slot.keys, raw.lb_slot.values);
    const rawNs = Number(process.hrtime.bigint() - t1);
    // Both must have produced the same kernel state: the engine's next apply finds nothing to do.
    if (engine.apply(desired).upserts !== 0) throw new Error("raw batch and engine disagree on the final state");
    if (r === 0) continue; // warm-up round
    samples.engine.push(engineNs);
    samples.raw.push(rawNs);
  }
  const engineRate = (deltaCount / median(samples.engine)) * 1e9;
  const rawRate = (deltaCount / median(samples.raw)) * 1e9;
  const ratio = engineRate / rawRate;
  console.log(`bench:agent: ${deltaCount} new entries (policy + lb_slot) over ${2 * BASE_PER_MAP} unchanged, median of ${ROUNDS}`);
  console.log(`| measure | entries/s | ms | ratio | goal |`);
  console.log(`|---|---|---|---|---|`);
  console.log(`| raw bpf_map_update_batch (pre-encoded) | ${(rawRate / 1e6).toFixed(2)}M | ${(median(samples.raw) / 1e6).toFixed(1)} | 1.00 | |`);
  console.log(`| agent engine (encode + read back + diff + batch apply) | ${(engineRate / 1e6).toFixed(2)}M | ${(median(samples.engine) / 1e6).toFixed(1)} | ${ratio.toFixed(2)} | >= 0.5 |`);
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(
    new URL("./results/latest.json", import.meta.url),
    `${JSON.stringify({ at: new Date().toISOString(), delta: deltaCount, unchanged: 2 * BASE_PER_MAP, engineEntriesPerSec: engineRate, rawEntriesPerSec: rawRate, ratio }, null, 2)}\n`,
  );
} finally {
  dp.close();
  cleanup(pinDir);
  rmSync(pinDir, { recursive: true, force: true });
  if (mounted) execFileSync("umount", [BPFFS_ROOT]);
}
