-- Row-level security for the SPIFFE tables, as 0001 does for the first ones.
-- The default privileges of 0001 already cover tables created later by the
-- same role; the grants are repeated so the migration does not depend on it.
GRANT SELECT, INSERT, UPDATE, DELETE ON identities, ca_authorities, ca_slots, svid_issuances TO weft_app;--> statement-breakpoint
GRANT USAGE, SELECT, UPDATE ON security_identity_seq, svid_issuances_id_seq TO weft_app;--> statement-breakpoint
ALTER TABLE identities ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE identities FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON identities USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
ALTER TABLE ca_authorities ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE ca_authorities FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON ca_authorities USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
ALTER TABLE ca_slots ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE ca_slots FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON ca_slots USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
ALTER TABLE svid_issuances ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE svid_issuances FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON svid_issuances USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());
