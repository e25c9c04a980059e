CREATE TABLE "change_log_horizon" (
	"id" integer PRIMARY KEY NOT NULL,
	"pruned_through" bigint NOT NULL
);
--> statement-breakpoint
CREATE INDEX "audit_log_at_idx" ON "audit_log" USING btree ("at");--> statement-breakpoint
CREATE INDEX "change_log_at_idx" ON "change_log" USING btree ("at");--> statement-breakpoint
INSERT INTO "change_log_horizon" ("id", "pruned_through") VALUES (1, 0);--> statement-breakpoint
-- Retention (db/log-retention.ts) deletes old rows of every tenant as its own
-- role: request transactions (weft_app) stay bound to their tenant, and only
-- this role may raise the change log's horizon.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'weft_log_pruner') THEN
    CREATE ROLE weft_log_pruner NOLOGIN;
  END IF;
END
$$;--> statement-breakpoint
GRANT weft_log_pruner TO CURRENT_USER;--> statement-breakpoint
GRANT USAGE ON SCHEMA public TO weft_log_pruner;--> statement-breakpoint
-- UPDATE: the batches lock their rows (FOR UPDATE SKIP LOCKED) before deleting them.
GRANT SELECT, UPDATE, DELETE ON change_log, audit_log TO weft_log_pruner;--> statement-breakpoint
GRANT SELECT, UPDATE ON change_log_horizon TO weft_log_pruner;--> statement-breakpoint
REVOKE INSERT, UPDATE, DELETE ON change_log_horizon FROM weft_app;--> statement-breakpoint
CREATE POLICY log_pruner ON change_log TO weft_log_pruner USING (true) WITH CHECK (false);--> statement-breakpoint
CREATE POLICY log_pruner ON audit_log TO weft_log_pruner USING (true) WITH CHECK (false);
