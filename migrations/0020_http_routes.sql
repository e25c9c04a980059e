CREATE TABLE "http_routes" (
	"id" serial PRIMARY KEY NOT NULL,
	"tenant_id" bigint NOT NULL,
	"name" text NOT NULL,
	"parent_refs" jsonb NOT NULL,
	"rules" jsonb NOT NULL,
	"revision" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "http_routes_tenant_name_unique" UNIQUE("tenant_id","name")
);
--> statement-breakpoint
ALTER TABLE "http_routes" ADD CONSTRAINT "http_routes_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- Row-level security as for services and policies (0005, 0008): tenant-bound
-- for requests, read-only for the platform role the compiler runs as.
GRANT SELECT, INSERT, UPDATE, DELETE ON http_routes TO weft_app;--> statement-breakpoint
GRANT USAGE, SELECT, UPDATE ON http_routes_id_seq TO weft_app;--> statement-breakpoint
GRANT SELECT ON http_routes TO weft_platform;--> statement-breakpoint
ALTER TABLE http_routes ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE http_routes FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON http_routes USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON http_routes FOR SELECT TO weft_platform USING (true);
