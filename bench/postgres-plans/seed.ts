/**
 * A seeded Weft database at a given scale, written straight in SQL with
 * generate_series (seconds for 100,000 workloads, where the API would take
 * hours): tenants with identities and a CA slot each, nodes with credentials
 * and pod CIDR blocks, workloads spread over both, and the logs a running
 * installation accumulates (changes, audit rows, SVID records, flows).
 * Columns follow api/src/db/schema.ts; a seed that no longer fits the
 * migrations fails on insert instead of drifting.
 */
import type pg from "pg";

export interface Scale {
  tenants: number;
  nodes: number;
  workloads: number;
  /** Change-log (and audit) rows per workload: the writes of its history. */
  changesPerWorkload: number;
  flows: number;
  issuances: number;
}

export const FULL_SCALE: Scale = { tenants: 50, nodes: 10_000, workloads: 100_000, changesPerWorkload: 3, flows: 200_000, issuances: 100_000 };
export const TEST_SCALE: Scale = { tenants: 20, nodes: 2_000, workloads: 20_000, changesPerWorkload: 2, flows: 40_000, issuances: 20_000 };

export const IDENTITIES_PER_TENANT = 10;

/** What the hot queries look up: names and keys the seed made. */
export interface Seeded {
  tenantId: number;
  node: string;
  credentialHash: string;
  workload: string;
  workloadTenantId: number;
  slotId: string;
  headRevision: number;
}

/** Seeds an empty, migrated database; answers keys for the hot queries. Runs as the connecting (owner) role. */
export async function seed(client: pg.Client, s: Scale): Promise<Seeded> {
  const q = (text: string, values: unknown[] = []) => client.query(text, values);
  await q("BEGIN");
  await q(
    `INSERT INTO tenants (name, trust_domain, revision)
     SELECT 'seed-t' || i, 'seed-t' || i || '.weft.local', 1 FROM generate_series(1, $1) i`,
    [s.tenants],
  );
  const { rows: t } = await q(`SELECT min(id)::int AS first FROM tenants WHERE name LIKE 'seed-t%'`);
  const first = t[0].first as number;
  await q(
    `INSERT INTO identities (tenant_id, name, path, revision)
     SELECT id, 'id-' || j, '/id-' || j, 1 FROM tenants, generate_series(1, $1) j WHERE name LIKE 'seed-t%'`,
    [IDENTITIES_PER_TENANT],
  );
  await q(
    `INSERT INTO ca_slots (tenant_id, id, status, not_before, not_after, ca_cert_der, ca_key_sealed, jwt_kid, jwt_public_key_spki, jwt_key_sealed)
     SELECT id, gen_random_uuid(), 'active', now(), now() + interval '90 days', 'der', 'sealed', 'kid-' || id, 'spki', 'sealed'
     FROM tenants WHERE name LIKE 'seed-t%'`,
  );
  // Node k owns 10.(k/256).(k%256).0/24: 10,000 nodes fit in 10.0.0.0/8's first 40 /16s.
  await q(
    `INSERT INTO nodes (name, zone, pod_cidr, credential_hash, revision)
     SELECT 'seed-n' || k, 'zone-' || (k % 3), '10.' || (k / 256) || '.' || (k % 256) || '.0/24', encode(sha256(('cred-' || k)::bytea), 'hex'), 1
     FROM generate_series(1, $1) k`,
    [s.nodes],
  );
  await q(
    `INSERT INTO workloads (tenant_id, name, identity, node, addresses, revision)
     SELECT $1 + (i % $2), 'w-' || i, 'id-' || (i % $3 + 1), 'seed-n' || k,
            ARRAY['10.' || (k / 256) || '.' || (k % 256) || '.' || ((i / $4) % 250 + 2)], i
     FROM generate_series(1, $5) i, LATERAL (SELECT i % $4 + 1 AS k) n`,
    [first, s.tenants, IDENTITIES_PER_TENANT, s.nodes, s.workloads],
  );
  // One workload in ten is probed, and reported.
  await q(
    `INSERT INTO workload_health (tenant_id, name, healthy, since, node)
     SELECT tenant_id, name, name NOT LIKE '%7', now(), node FROM workloads WHERE name LIKE '%0'`,
  );
  const changes = s.workloads * s.changesPerWorkload;
  // Revision r changed workload r % W: a history of upserts, oldest first, over the last 30 days.
  await q(
    `INSERT INTO change_log (revision, tenant_id, kind, name, op, at)
     SELECT r, $1 + ((r % $2 + 1) % $3), 'workload', 'w-' || (r % $2 + 1), 'upsert', now() - make_interval(secs => ($4 - r) * 2592000.0 / $4)
     FROM generate_series(1, $4) r`,
    [first, s.workloads, s.tenants, changes],
  );
  await q(
    `INSERT INTO audit_log (tenant_id, actor, action, resource, request_id, revision, at)
     SELECT tenant_id, 'token:seed', 'workload.put', 'workload/' || name, 'req-' || revision, revision, at FROM change_log`,
  );
  await q(
    `INSERT INTO svid_issuances (tenant_id, slot_id, kind, identity_name, spiffe_id, serial, issued_at, expires_at, actor, request_id, revision)
     SELECT s.tenant_id, s.id, 'x509-svid', 'id-' || (i % $2 + 1), 'spiffe://seed/id', to_hex(i), now() - make_interval(secs => i), now() + interval '1 hour',
            'token:seed', 'req-svid-' || i, 1
     FROM generate_series(1, $1) i JOIN ca_slots s ON s.tenant_id = $3 + (i % $4)`,
    [s.issuances, IDENTITIES_PER_TENANT, first, s.tenants],
  );
  await q(
    `INSERT INTO flows (tenant_id, whole, node, time, hook, verdict, reason, protocol, src_tenant_id, dst_tenant_id, src_identity, dst_identity, source, destination)
     SELECT $2 + (i % $3), false, 'seed-n' || (i % $4 + 1), now() - make_interval(secs => i * 0.5), 'egress', 'forwarded', 'policy-allow', 6,
            $2 + (i % $3), $2 + (i % $3), 'id-1', 'id-2', '{}'::jsonb, '{}'::jsonb
     FROM generate_series(1, $1) i`,
    [s.flows, first, s.tenants, s.nodes],
  );
  await q(`UPDATE revision_counter SET revision = $1 WHERE id = 1`, [changes]);
  await q("COMMIT");
  await q("ANALYZE");
  return {
    tenantId: first,
    node: `seed-n${Math.ceil(s.nodes / 2)}`,
    credentialHash: (await q(`SELECT credential_hash FROM nodes WHERE name = $1`, [`seed-n${Math.ceil(s.nodes / 2)}`])).rows[0].credential_hash,
    workload: "w-1",
    workloadTenantId: first + (1 % s.tenants),
    slotId: (await q(`SELECT id FROM ca_slots WHERE tenant_id = $1`, [first])).rows[0].id,
    headRevision: changes,
  };
}
