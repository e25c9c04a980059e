-- Row-level security for workloads, services and policies, as 0001 does.
-- The datapath compiler must read every tenant's rows to build a node's
-- maps: it does so in transactions that set weft.platform_read = 'on', which
-- the read-only platform_read policies accept. Writes stay tenant-bound.
GRANT SELECT, INSERT, UPDATE, DELETE ON workloads, services, policies, backend_ids, cidr_identities, nodes, join_tokens TO weft_app;--> statement-breakpoint
GRANT USAGE, SELECT, UPDATE ON services_id_seq, policies_id_seq, backend_ids_id_seq TO weft_app;--> statement-breakpoint
CREATE FUNCTION weft_platform_read() RETURNS boolean LANGUAGE sql STABLE AS
  $$ SELECT coalesce(current_setting('weft.platform_read', true), '') = 'on' $$;--> statement-breakpoint
ALTER TABLE workloads ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE workloads FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON workloads USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON workloads FOR SELECT USING (weft_platform_read());--> statement-breakpoint
ALTER TABLE services ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE services FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON services USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON services FOR SELECT USING (weft_platform_read());--> statement-breakpoint
ALTER TABLE policies ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE policies FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON policies USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON policies FOR SELECT USING (weft_platform_read());--> statement-breakpoint
CREATE POLICY platform_read ON identities FOR SELECT USING (weft_platform_read());
