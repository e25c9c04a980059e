-- Platform-wide reads (the datapath compiler, platform-wide uniqueness checks)
-- used to switch on a setting, weft.platform_read, that any transaction of the
-- request role could set for itself and then read every tenant. They now run
-- as their own role, weft_platform: read-only, and the platform_read policies
-- name that role, so no setting a request transaction can change opens them.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'weft_platform') THEN
    CREATE ROLE weft_platform NOLOGIN;
  END IF;
END
$$;--> statement-breakpoint
GRANT weft_platform TO CURRENT_USER;--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO weft_platform;--> statement-breakpoint
GRANT SELECT ON ALL TABLES IN SCHEMA public TO weft_platform;--> statement-breakpoint
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO weft_platform;--> statement-breakpoint
DROP POLICY platform_read ON workloads;--> statement-breakpoint
DROP POLICY platform_read ON services;--> statement-breakpoint
DROP POLICY platform_read ON policies;--> statement-breakpoint
DROP POLICY platform_read ON identities;--> statement-breakpoint
DROP POLICY platform_read ON change_log;--> statement-breakpoint
DROP FUNCTION weft_platform_read();--> statement-breakpoint
CREATE POLICY platform_read ON workloads FOR SELECT TO weft_platform USING (true);--> statement-breakpoint
CREATE POLICY platform_read ON services FOR SELECT TO weft_platform USING (true);--> statement-breakpoint
CREATE POLICY platform_read ON policies FOR SELECT TO weft_platform USING (true);--> statement-breakpoint
CREATE POLICY platform_read ON identities FOR SELECT TO weft_platform USING (true);--> statement-breakpoint
CREATE POLICY platform_read ON change_log FOR SELECT TO weft_platform USING (true);
