// CA rotation after SPIRE's CA manager (pkg/server/ca/manager), as pure
// functions over plain data. One slot mechanism, generic in the key material
// it carries, so X.509 CA keys and JWT keys (or anything else that rotates)
// share it instead of each growing its own copy.
//
//   prepared: trusted (in the bundle) but does not sign yet, so every peer
//             picks it up before the first SVID it signs appears;
//   active:   the one signer ("current" in SPIRE; the prepared one is "next");
//   old:      no longer signs, stays trusted until the last SVID it signed
//             has expired, then is pruned.
//
// Two layers: the mechanics (prepare, activate, prune, noteIssued) change
// state; the scheduler (dueAction and the threshold functions) only decides
// when. Time is always an argument, never read from a clock here.
import { CaStateError } from "./errors.ts";

export type SlotStatus = "prepared" | "active" | "old";

export interface Slot<M> {
  id: string;
  status: SlotStatus;
  notBefore: Date;
  notAfter: Date;
  /** Latest notAfter (X.509) or exp (JWT) of anything this slot signed; null if nothing yet. */
  maxIssuedNotAfter: Date | null;
  material: M;
}

export interface AuthorityState<M> {
  /** spiffe_sequence: rises whenever the set of trusted keys changes. */
  sequence: number;
  slots: Slot<M>[];
}

export const emptyState = <M>(): AuthorityState<M> => ({ sequence: 0, slots: [] });

// ---- thresholds (SPIRE's rule of thumb) ----

/** Prepare the next CA once this fraction of the active CA's life has passed. */
export const PREPARE_AT_LIFE_FRACTION = 1 / 2;
/** Activate the next CA when this fraction of the active CA's life is left. */
export const ACTIVATE_AT_LIFE_LEFT_FRACTION = 1 / 6;

const lifeMs = (s: { notBefore: Date; notAfter: Date }): number => s.notAfter.getTime() - s.notBefore.getTime();

export function preparationThreshold(s: { notBefore: Date; notAfter: Date }): Date {
  return new Date(s.notBefore.getTime() + lifeMs(s) * PREPARE_AT_LIFE_FRACTION);
}

export function activationThreshold(s: { notBefore: Date; notAfter: Date }): Date {
  return new Date(s.notAfter.getTime() - lifeMs(s) * ACTIVATE_AT_LIFE_LEFT_FRACTION);
}

// ---- queries ----

export const activeSlot = <M>(s: AuthorityState<M>): Slot<M> | undefined => s.slots.find((x) => x.status === "active");
export const preparedSlot = <M>(s: AuthorityState<M>): Slot<M> | undefined => s.slots.find((x) => x.status === "prepared");

/**
 * A slot can be dropped once nothing it signed is still valid (or it expired
 * itself). A prepared slot that expired before anyone activated it signed
 * nothing, so it goes too and a fresh one is prepared.
 */
export function isPrunable<M>(slot: Slot<M>, now: Date): boolean {
  if (slot.status === "active") return false;
  if (slot.notAfter.getTime() <= now.getTime()) return true;
  if (slot.status === "prepared") return false;
  return slot.maxIssuedNotAfter === null || slot.maxIssuedNotAfter.getTime() <= now.getTime();
}

// ---- mechanics ----

/** Adds a new slot as prepared: trusted from now on, not signing. */
export function prepare<M>(state: AuthorityState<M>, slot: Omit<Slot<M>, "status" | "maxIssuedNotAfter">): AuthorityState<M> {
  const pending = preparedSlot(state);
  if (pending) throw new CaStateError("already_prepared", `authority ${pending.id} is already prepared; activate it first`);
  return {
    sequence: state.sequence + 1,
    slots: [...state.slots, { ...slot, status: "prepared", maxIssuedNotAfter: null }],
  };
}

/**
 * The prepared slot becomes the signer; the previous signer becomes old.
 * The bundle's key set is unchanged, so the sequence stays.
 */
export function activate<M>(state: AuthorityState<M>): AuthorityState<M> {
  const next = preparedSlot(state);
  if (!next) throw new CaStateError("nothing_prepared", "no authority is prepared; prepare one first");
  return {
    sequence: state.sequence,
    slots: state.slots.map((s) =>
      s.id === next.id ? { ...s, status: "active" } : s.status === "active" ? { ...s, status: "old" } : s,
    ),
  };
}

/** Drops old slots that nothing valid depends on; bumps the sequence if any left. */
export function prune<M>(state: AuthorityState<M>, now: Date): AuthorityState<M> {
  const kept = state.slots.filter((s) => !isPrunable(s, now));
  if (kept.length === state.slots.length) return state;
  return { sequence: state.sequence + 1, slots: kept };
}

/** Records that `slotId` signed something valid until notAfter. */
export function noteIssued<M>(state: AuthorityState<M>, slotId: string, notAfter: Date): AuthorityState<M> {
  return {
    ...state,
    slots: state.slots.map((s) =>
      s.id === slotId && (s.maxIssuedNotAfter === null || s.maxIssuedNotAfter < notAfter) ? { ...s, maxIssuedNotAfter: notAfter } : s,
    ),
  };
}

// ---- scheduler ----

export type DueAction =
  /** No signer and nothing prepared (new tenant): prepare, then activate at once. */
  | { kind: "bootstrap" }
  | { kind: "prepare" }
  | { kind: "activate"; slotId: string }
  | { kind: "prune"; slotIds: string[] };

/**
 * The one automatic action due at `now`, or null. Apply it and ask again:
 * a server that was down for long may need several in a row (e.g. prepare
 * then activate at once when the active CA is already past both thresholds).
 */
export function dueAction<M>(state: AuthorityState<M>, now: Date): DueAction | null {
  const t = now.getTime();
  const current = activeSlot(state);
  const next = preparedSlot(state);
  if (!current || current.notAfter.getTime() <= t) {
    if (next && next.notAfter.getTime() > t) return { kind: "activate", slotId: next.id };
    if (!current && !next) return { kind: "bootstrap" };
    if (!next) return { kind: "prepare" };
  }
  if (current && current.notAfter.getTime() > t) {
    if (!next && t >= preparationThreshold(current).getTime()) return { kind: "prepare" };
    if (next && t >= activationThreshold(current).getTime()) return { kind: "activate", slotId: next.id };
  }
  const prunable = state.slots.filter((s) => isPrunable(s, now)).map((s) => s.id);
  return prunable.length ? { kind: "prune", slotIds: prunable } : null;
}
