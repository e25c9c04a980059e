CREATE TABLE "federation_endpoint_bundles" (
	"tenant_id" bigint NOT NULL,
	"name" text NOT NULL,
	"source" text NOT NULL,
	"bundle" jsonb NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "federation_endpoint_bundles_tenant_id_name_pk" PRIMARY KEY("tenant_id","name")
);
--> statement-breakpoint
ALTER TABLE "federation_endpoint_bundles" ADD CONSTRAINT "federation_endpoint_bundles_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "federation_endpoint_bundles" ADD CONSTRAINT "federation_endpoint_bundles_tenant_id_name_federations_tenant_id_name_fk" FOREIGN KEY ("tenant_id","name") REFERENCES "public"."federations"("tenant_id","name") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
-- Row-level security as for federations (0012): tenant-bound for the request
-- role (the refresher writes as the app role with the federation's tenant set,
-- so a row can only be stored under the tenant whose federation it belongs to).
-- The compiler (platform role) reads the columns it needs, as 0021/0023 grant
-- ca_slots' public columns only: a fetched bundle is public (its endpoint
-- serves it to anyone), and when it changed is none of the compiler's business.
GRANT SELECT, INSERT, UPDATE, DELETE ON federation_endpoint_bundles TO weft_app;--> statement-breakpoint
GRANT SELECT (tenant_id, name, source, bundle) ON federation_endpoint_bundles TO weft_platform;--> statement-breakpoint
ALTER TABLE federation_endpoint_bundles ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE federation_endpoint_bundles FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON federation_endpoint_bundles USING (tenant_id = weft_current_tenant()) WITH CHECK (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON federation_endpoint_bundles FOR SELECT TO weft_platform USING (true);
