CREATE TABLE "workload_health" (
	"tenant_id" bigint NOT NULL,
	"name" text NOT NULL,
	"healthy" boolean NOT NULL,
	"since" timestamp with time zone NOT NULL,
	"node" text NOT NULL,
	CONSTRAINT "workload_health_tenant_id_name_pk" PRIMARY KEY("tenant_id","name")
);
--> statement-breakpoint
ALTER TABLE "nodes" ADD COLUMN "unreachable_since" timestamp with time zone;--> statement-breakpoint
ALTER TABLE "workloads" ADD COLUMN "health_check" jsonb;--> statement-breakpoint
ALTER TABLE "workload_health" ADD CONSTRAINT "workload_health_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workload_health" ADD CONSTRAINT "workload_health_tenant_id_name_workloads_tenant_id_name_fk" FOREIGN KEY ("tenant_id","name") REFERENCES "public"."workloads"("tenant_id","name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- Row-level security as for workloads (0005, 0008): tenant-bound for the request role, read-only for the platform role.
GRANT SELECT, INSERT, UPDATE, DELETE ON workload_health TO weft_app;--> statement-breakpoint
GRANT SELECT ON workload_health TO weft_platform;--> statement-breakpoint
ALTER TABLE workload_health ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE workload_health FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON workload_health USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON workload_health FOR SELECT TO weft_platform USING (true);
