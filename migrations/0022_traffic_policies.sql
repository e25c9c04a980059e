CREATE TABLE "traffic_policies" (
	"id" serial PRIMARY KEY NOT NULL,
	"tenant_id" bigint NOT NULL,
	"name" text NOT NULL,
	"target_ref" jsonb NOT NULL,
	"service" text NOT NULL,
	"connection_pool" jsonb,
	"outlier_detection" jsonb,
	"rate_limit" jsonb,
	"revision" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "traffic_policies_tenant_name_unique" UNIQUE("tenant_id","name"),
	CONSTRAINT "traffic_policies_tenant_service_unique" UNIQUE("tenant_id","service")
);
--> statement-breakpoint
ALTER TABLE "traffic_policies" ADD CONSTRAINT "traffic_policies_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- Row-level security as for http_routes (0020): tenant-bound for requests,
-- read-only for the platform role the compiler runs as.
GRANT SELECT, INSERT, UPDATE, DELETE ON traffic_policies TO weft_app;--> statement-breakpoint
GRANT USAGE, SELECT, UPDATE ON traffic_policies_id_seq TO weft_app;--> statement-breakpoint
GRANT SELECT ON traffic_policies TO weft_platform;--> statement-breakpoint
ALTER TABLE traffic_policies ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE traffic_policies FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON traffic_policies USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON traffic_policies FOR SELECT TO weft_platform USING (true);
