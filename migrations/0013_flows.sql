CREATE TABLE "flow_aggregates" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" bigint,
	"whole" boolean NOT NULL,
	"node" text NOT NULL,
	"start" timestamp (3) with time zone NOT NULL,
	"end" timestamp (3) with time zone NOT NULL,
	"source" jsonb NOT NULL,
	"destination" jsonb NOT NULL,
	"port" integer NOT NULL,
	"protocol" integer NOT NULL,
	"verdict" text NOT NULL,
	"reason" text NOT NULL,
	"count" bigint NOT NULL,
	"bytes" bigint NOT NULL
);
--> statement-breakpoint
CREATE TABLE "flow_batches" (
	"node" text NOT NULL,
	"batch_id" uuid NOT NULL,
	"received_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "flow_batches_node_batch_id_pk" PRIMARY KEY("node","batch_id")
);
--> statement-breakpoint
CREATE TABLE "flows" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" bigint,
	"whole" boolean NOT NULL,
	"node" text NOT NULL,
	"time" timestamp (3) with time zone NOT NULL,
	"hook" text NOT NULL,
	"verdict" text NOT NULL,
	"reason" text NOT NULL,
	"protocol" integer NOT NULL,
	"src_tenant_id" bigint,
	"dst_tenant_id" bigint,
	"src_identity" text,
	"dst_identity" text,
	"service" text,
	"source" jsonb NOT NULL,
	"destination" jsonb NOT NULL,
	"original_destination" jsonb,
	"policy" jsonb
);
--> statement-breakpoint
ALTER TABLE "flow_aggregates" ADD CONSTRAINT "flow_aggregates_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "flows" ADD CONSTRAINT "flows_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "flow_aggregates_tenant_end_idx" ON "flow_aggregates" USING btree ("tenant_id","end");--> statement-breakpoint
CREATE INDEX "flow_aggregates_end_idx" ON "flow_aggregates" USING btree ("end","id");--> statement-breakpoint
CREATE INDEX "flow_batches_received_idx" ON "flow_batches" USING btree ("received_at");--> statement-breakpoint
CREATE INDEX "flows_tenant_time_idx" ON "flows" USING btree ("tenant_id","time","id");--> statement-breakpoint
CREATE INDEX "flows_time_idx" ON "flows" USING btree ("time","id");--> statement-breakpoint
-- Flows are written by one role, weft_flow_writer (agents' batches, retention),
-- for any tenant; request transactions (weft_app) only read them, bound to
-- their tenant; the operator reads as weft_platform. A cross-tenant flow has
-- one row per tenant, redacted for it when written (mesh/flows/views.ts), so
-- tenant_id is the reader, and null is the operator's copy alone.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'weft_flow_writer') THEN
    CREATE ROLE weft_flow_writer NOLOGIN;
  END IF;
END
$$;--> statement-breakpoint
GRANT weft_flow_writer TO CURRENT_USER;--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO weft_flow_writer;--> statement-breakpoint
GRANT SELECT, INSERT, UPDATE, DELETE ON flows, flow_aggregates, flow_batches TO weft_flow_writer;--> statement-breakpoint
GRANT USAGE ON SEQUENCE flows_id_seq, flow_aggregates_id_seq TO weft_flow_writer;--> statement-breakpoint
REVOKE INSERT, UPDATE, DELETE ON flows, flow_aggregates FROM weft_app;--> statement-breakpoint
REVOKE ALL ON flow_batches FROM weft_app;--> statement-breakpoint
REVOKE ALL ON SEQUENCE flows_id_seq, flow_aggregates_id_seq FROM weft_app;--> statement-breakpoint
GRANT SELECT ON flows, flow_aggregates, flow_batches TO weft_platform;--> statement-breakpoint
ALTER TABLE flows ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE flows FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON flows FOR SELECT TO weft_app USING (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON flows FOR SELECT TO weft_platform USING (true);--> statement-breakpoint
CREATE POLICY flow_writer ON flows TO weft_flow_writer USING (true) WITH CHECK (true);--> statement-breakpoint
ALTER TABLE flow_aggregates ENABLE ROW LEVEL SECURITY;--> statement-breakpoint
ALTER TABLE flow_aggregates FORCE ROW LEVEL SECURITY;--> statement-breakpoint
CREATE POLICY tenant_isolation ON flow_aggregates FOR SELECT TO weft_app USING (tenant_id = weft_current_tenant());--> statement-breakpoint
CREATE POLICY platform_read ON flow_aggregates FOR SELECT TO weft_platform USING (true);--> statement-breakpoint
CREATE POLICY flow_writer ON flow_aggregates TO weft_flow_writer USING (true) WITH CHECK (true);
