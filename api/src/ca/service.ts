// The CA as a service over a store the API implements (drizzle). Routes stay
// thin: validate the request, call mayObtainSvid (authz.ts), call one method
// here, map CaInputError -> 400, CaStateError -> 409.
import { randomUUID } from "node:crypto";
import { bundleAuthority, createAuthority, openAuthority, DEFAULT_CA_TTL_MS, type AuthorityMaterial, type OpenAuthority } from "./authority.ts";
import { buildBundle, bundlePem, DEFAULT_REFRESH_HINT_SECONDS, type SpiffeBundle } from "./bundle.ts";
import { verifyCsr } from "./csr.ts";
import { toPem } from "@weft/pki/der";
import { CaInputError, CaStateError } from "./errors.ts";
import { mintJwtSvid, validateAudience } from "./jwt-svid.ts";
import type { Kek } from "./kek.ts";
import { activate, activeSlot, dueAction, emptyState, prepare, prune, type AuthorityState, type DueAction } from "./rotation.ts";
import { InThreadLeafIssuer, type LeafIssuer } from "./leaf-issuer.ts";

export type CaState = AuthorityState<AuthorityMaterial>;

/**
 * Who asked for a CA operation, for the audit rows the store writes: the
 * library passes it through untouched. Explicit on every call (never an
 * ambient context) so that no caller is audited as someone else, and so the
 * request path needs no AsyncLocalStorage.
 */
export interface Caller {
  actor: string;
  requestId: string;
  /** The caller's own x-request-id, when safe; recorded beside requestId. */
  clientRequestId?: string | null;
}

/** The API itself, e.g. the rotation schedule; `actor` says which part. */
export const systemCaller = (actor = "system"): Caller => ({ actor, requestId: "system" });

/** One row per issued SVID, for audit. */
export interface IssuanceRecord {
  tenantId: string;
  slotId: string;
  kind: "x509-svid" | "jwt-svid";
  identityName: string;
  spiffeId: string;
  /** Hex serial of an X.509-SVID; null for a JWT-SVID. */
  serial: string | null;
  issuedAt: Date;
  expiresAt: Date;
}

/**
 * What the API implements with drizzle. Suggested tables:
 *   ca_slots(tenant_id, id, status, not_before, not_after, max_issued_not_after,
 *            ca_cert_der, ca_key_sealed, jwt_kid, jwt_public_key_spki, jwt_key_sealed)
 *   ca_authorities(tenant_id, sequence, revision)           -- one row per tenant
 *   svid_issuances(tenant_id, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at)
 */
export interface CaStore {
  /** The tenant's slots and bundle sequence with a revision for compare-and-swap, or null if it has no CA yet. */
  load(tenantId: string): Promise<{ state: CaState; revision: number } | null>;
  /**
   * Replaces the tenant's slots (insert new, update status, delete absent) and
   * sequence, only if the stored revision still equals expectedRevision (null:
   * nothing stored yet); then revision + 1. Returns false on a lost race.
   * Must never lower a slot's max_issued_not_after (use GREATEST): issuances
   * raise it concurrently through recordIssuance.
   */
  save(tenantId: string, state: CaState, expectedRevision: number | null, caller: Caller): Promise<boolean>;
  /**
   * In one transaction: insert the record, and raise the slot's
   * max_issued_not_after to at least record.expiresAt; audited as `caller`.
   */
  recordIssuance(record: IssuanceRecord, caller: Caller): Promise<void>;
}

export interface CaServiceOptions {
  store: CaStore;
  kek: Kek;
  /** Injected so tests move time instead of sleeping. */
  clock?: () => Date;
  caTtlMs?: number;
  refreshHintSeconds?: number;
  /** Where CSRs are verified and leaves signed: this thread unless a signing pool is given (signing-pool.ts). */
  leaves?: LeafIssuer;
}

export interface X509SvidResult {
  /** The leaf, PEM. */
  certificate: string;
  /** Certificates from the leaf's issuer up, PEM each (here: the tenant CA). */
  chain: string[];
  expiresAt: Date;
  serial: string;
}

const MAX_CAS_ATTEMPTS = 5;
const MAX_SCHEDULE_STEPS = 4; // bootstrap/prepare, activate, prune, and one spare
const MAX_OPEN_CACHE = 10_000;

export class CaService {
  readonly #store: CaStore;
  readonly #kek: Kek;
  readonly #clock: () => Date;
  readonly #caTtlMs: number;
  readonly #refreshHint: number;
  readonly #leaves: LeafIssuer;
  /** Decrypted signers by tenant/slot: opening costs a KEK decrypt and key parse per slot, not per SVID. */
  readonly #open = new Map<string, OpenAuthority>();

  constructor(o: CaServiceOptions) {
    this.#store = o.store;
    this.#kek = o.kek;
    this.#clock = o.clock ?? (() => new Date());
    this.#caTtlMs = o.caTtlMs ?? DEFAULT_CA_TTL_MS;
    this.#refreshHint = o.refreshHintSeconds ?? DEFAULT_REFRESH_HINT_SECONDS;
    this.#leaves = o.leaves ?? new InThreadLeafIssuer();
  }

  /** Creates the tenant's first CA if it has none (call at tenant creation). */
  async ensure(tenantId: string, trustDomain: string, caller: Caller): Promise<CaState> {
    return this.#mutate(tenantId, caller, (s) => (activeSlot(s) ? s : this.#apply(s, { kind: "bootstrap" }, tenantId, trustDomain)));
  }

  /** Manual prepare (POST .../ca/prepare). CaStateError if one is already prepared. */
  async prepare(tenantId: string, trustDomain: string, caller: Caller): Promise<CaState> {
    return this.#mutate(tenantId, caller, (s) => this.#apply(s, { kind: "prepare" }, tenantId, trustDomain));
  }

  /** Manual activate (POST .../ca/activate). CaStateError if nothing is prepared. */
  async activate(tenantId: string, caller: Caller): Promise<CaState> {
    return this.#mutate(tenantId, caller, (s) => activate(s));
  }

  /**
   * Applies every automatic action due now (the scheduler's verdicts) and
   * returns them; a periodic job calls this per tenant. Off unless called.
   */
  async runSchedule(tenantId: string, trustDomain: string, caller: Caller): Promise<DueAction[]> {
    const done: DueAction[] = [];
    await this.#mutate(tenantId, caller, (s, pruned) => {
      done.length = 0;
      if (pruned.length) done.push({ kind: "prune", slotIds: pruned });
      let state = s;
      for (let i = 0; i < MAX_SCHEDULE_STEPS; i++) {
        const action = dueAction(state, this.#clock());
        if (!action) break;
        state = this.#apply(state, action, tenantId, trustDomain);
        done.push(action);
      }
      return state;
    });
    return done;
  }

  async issueX509Svid(req: {
    tenantId: string;
    identityName: string;
    spiffeId: string;
    csrPem: string;
    ttlMs?: number;
    caller: Caller;
  }): Promise<X509SvidResult> {
    let signer: OpenAuthority;
    try {
      signer = await this.#signer(req.tenantId);
    } catch (err) {
      // A bad CSR is the caller's to fix first, CA or not: verify it here before answering "no CA".
      if (err instanceof CaStateError) verifyCsr(req.csrPem, req.spiffeId);
      throw err;
    }
    const now = this.#clock();
    const leaf = await this.#leaves.issue({
      slotKey: `${req.tenantId}/${signer.slotId}`,
      template: signer.leafTemplate,
      csrPem: req.csrPem,
      spiffeId: req.spiffeId,
      now,
      ...(req.ttlMs !== undefined && { ttlMs: req.ttlMs }),
    });
    await this.#store.recordIssuance({
      tenantId: req.tenantId,
      slotId: signer.slotId,
      kind: "x509-svid",
      identityName: req.identityName,
      spiffeId: req.spiffeId,
      serial: leaf.serialHex,
      issuedAt: now,
      expiresAt: leaf.notAfter,
    }, req.caller);
    return {
      certificate: toPem("CERTIFICATE", leaf.der),
      chain: [signer.caCertPem],
      expiresAt: leaf.notAfter,
      serial: leaf.serialHex,
    };
  }

  async issueJwtSvid(req: {
    tenantId: string;
    identityName: string;
    spiffeId: string;
    audience: unknown;
    ttlMs?: number;
    caller: Caller;
  }): Promise<{ token: string; expiresAt: Date }> {
    const errors = validateAudience(req.audience);
    if (errors.length) throw new CaInputError(errors);
    const signer = await this.#signer(req.tenantId);
    const now = this.#clock();
    const out = await mintJwtSvid({
      privateKey: signer.jwt.privateKey,
      kid: signer.jwt.kid,
      notAfter: signer.jwt.notAfter,
      spiffeId: req.spiffeId,
      audience: req.audience as string[],
      now,
      ...(req.ttlMs !== undefined && { ttlMs: req.ttlMs }),
    });
    await this.#store.recordIssuance({
      tenantId: req.tenantId,
      slotId: signer.slotId,
      kind: "jwt-svid",
      identityName: req.identityName,
      spiffeId: req.spiffeId,
      serial: null,
      issuedAt: now,
      expiresAt: out.expiresAt,
    }, req.caller);
    return out;
  }

  /** The bundle as JSON (GET .../bundle) and PEM (GET .../bundle.pem); null if the tenant has no CA. */
  async bundle(tenantId: string): Promise<{ json: SpiffeBundle; pem: string } | null> {
    const loaded = await this.#store.load(tenantId);
    if (!loaded) return null;
    // Pruning is lazy here too, so a bundle never lists a CA nothing depends on.
    const state = prune(loaded.state, this.#clock());
    const authorities = state.slots.map((s) => bundleAuthority(s.material));
    return { json: buildBundle(authorities, state.sequence, this.#refreshHint), pem: bundlePem(authorities) };
  }

  #apply(state: CaState, action: DueAction, tenantId: string, trustDomain: string): CaState {
    const now = this.#clock();
    const fresh = () => createAuthority({ tenantId, slotId: randomUUID(), trustDomain, now, ttlMs: this.#caTtlMs, kek: this.#kek });
    switch (action.kind) {
      case "bootstrap":
        return activate(prepare(state, fresh()));
      case "prepare":
        return prepare(state, fresh());
      case "activate":
        return activate(state);
      case "prune":
        return prune(state, now);
    }
  }

  /** Load, change, compare-and-swap; fn also learns which slots the pre-prune dropped. */
  async #mutate(tenantId: string, caller: Caller, fn: (s: CaState, pruned: string[]) => CaState): Promise<CaState> {
    for (let attempt = 0; attempt < MAX_CAS_ATTEMPTS; attempt++) {
      const loaded = await this.#store.load(tenantId);
      // Prune first: bundle() serves the pruned view with sequence + 1, so a
      // change made on top of the unpruned state would reuse that number.
      const base = loaded?.state ?? emptyState();
      const pruned = prune(base, this.#clock());
      const next = fn(pruned, base.slots.filter((x) => !pruned.slots.includes(x)).map((x) => x.id));
      if (loaded && next === loaded.state) return next;
      if (await this.#store.save(tenantId, next, loaded?.revision ?? null, caller)) return next;
    }
    throw new Error(`CA state of tenant ${tenantId} kept changing under us; giving up after ${MAX_CAS_ATTEMPTS} attempts`);
  }

  async #signer(tenantId: string): Promise<OpenAuthority> {
    const loaded = await this.#store.load(tenantId);
    const slot = loaded && activeSlot(loaded.state);
    if (!slot) throw new CaStateError("no_active_authority", `tenant ${tenantId} has no active CA`);
    const key = `${tenantId}/${slot.id}`;
    let open = this.#open.get(key);
    if (!open) {
      open = openAuthority(tenantId, slot, this.#kek);
      if (this.#open.size >= MAX_OPEN_CACHE) {
        const oldest = this.#open.keys().next().value!;
        this.#open.delete(oldest);
        this.#leaves.forget?.(oldest);
      }
      this.#open.set(key, open);
    }
    return open;
  }
}
