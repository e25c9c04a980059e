CREATE TABLE "federations" (
	"tenant_id" bigint NOT NULL,
	"name" text NOT NULL,
	"trust_domain" text NOT NULL,
	"bundle" jsonb NOT NULL,
	"revision" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "federations_tenant_id_name_pk" PRIMARY KEY("tenant_id","name"),
	CONSTRAINT "federations_tenant_trust_domain_unique" UNIQUE("tenant_id","trust_domain")
);
--> statement-breakpoint
ALTER TABLE "federations" ADD CONSTRAINT "federations_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- Row-level security as for workload_health (0010): tenant-bound for the request role, read-only for the platform role.
GRANT SELECT, INSERT, UPDATE, DELETE ON federations TO weft_app;--> statement-breakpoint
GRANT SELECT ON federations TO weft_platform;--> statement-breakpoint
ALTER TABLE federations ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE federations FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON federations USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON federations FOR SELECT TO weft_platform USING (true);
