-- The smallest IPv4 network that holds every IPv4 address of a workload (NULL without one): an
-- index on it answers "which workloads have an address in this block" (mesh/nodes.ts, choosing a
-- node's pod CIDR block) without unnesting every workload's addresses under the revision lock.
CREATE FUNCTION weft_ipv4_span(addresses text[]) RETURNS inet
  LANGUAGE sql IMMUTABLE PARALLEL SAFE
  AS $$ SELECT inet_merge(min(a::inet), max(a::inet)) FROM unnest(addresses) AS a WHERE family(a::inet) = 4 $$;--> statement-breakpoint
CREATE INDEX "workloads_addresses_idx" ON "workloads" USING gin ("addresses");--> statement-breakpoint
CREATE INDEX "workloads_ipv4_span_idx" ON "workloads" USING gist (weft_ipv4_span("addresses") inet_ops);
