// In-memory CaStore, for tests only: the drizzle store is api/src/ca/store.ts.
import { noteIssued } from "../../api/src/ca/rotation.ts";
import type { CaState, CaStore, Caller, IssuanceRecord } from "../../api/src/ca/service.ts";

/**
 * In-memory CaStore with the semantics the drizzle one must have (CAS on
 * revision, max_issued_not_after only rises).
 */
export class MemoryCaStore implements CaStore {
  readonly #tenants = new Map<string, { state: CaState; revision: number }>();
  /** Every record, with the caller it was recorded for. */
  readonly issuances: (IssuanceRecord & { caller: Caller })[] = [];

  async load(tenantId: string): Promise<{ state: CaState; revision: number } | null> {
    return this.#tenants.get(tenantId) ?? null;
  }

  async save(tenantId: string, state: CaState, expectedRevision: number | null, _caller: Caller): Promise<boolean> {
    const cur = this.#tenants.get(tenantId);
    if ((cur?.revision ?? null) !== expectedRevision) return false;
    let merged = state;
    for (const old of cur?.state.slots ?? []) {
      if (old.maxIssuedNotAfter) merged = noteIssued(merged, old.id, old.maxIssuedNotAfter);
    }
    this.#tenants.set(tenantId, { state: merged, revision: (expectedRevision ?? 0) + 1 });
    return true;
  }

  async recordIssuance(record: IssuanceRecord, caller: Caller): Promise<void> {
    this.issuances.push({ ...record, caller });
    const cur = this.#tenants.get(record.tenantId);
    if (cur) this.#tenants.set(record.tenantId, { ...cur, state: noteIssued(cur.state, record.slotId, record.expiresAt) });
  }
}
