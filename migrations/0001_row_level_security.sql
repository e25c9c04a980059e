-- The app runs every transaction as weft_app (SET LOCAL ROLE), a role that is
-- neither superuser nor table owner, so row-level security binds it even when
-- the connection itself is a superuser (as on PGlite and a throwaway cluster).
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'weft_app') THEN
    CREATE ROLE weft_app NOLOGIN;
  END IF;
END
$$;--> statement-breakpoint
GRANT weft_app TO CURRENT_USER;--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO weft_app;--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO weft_app;--> statement-breakpoint
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO weft_app;--> statement-breakpoint
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO weft_app;--> statement-breakpoint
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO weft_app;--> statement-breakpoint
INSERT INTO revision_counter (id, revision) VALUES (1, 0) ON CONFLICT DO NOTHING;--> statement-breakpoint
CREATE FUNCTION weft_current_tenant() RETURNS bigint LANGUAGE sql STABLE AS
  $$ SELECT nullif(current_setting('weft.tenant_id', true), '')::bigint $$;--> statement-breakpoint
ALTER TABLE api_tokens ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE api_tokens FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON api_tokens USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
ALTER TABLE audit_log ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE audit_log FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON audit_log USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
ALTER TABLE change_log ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE change_log FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON change_log USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());
