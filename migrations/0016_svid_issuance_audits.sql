DROP INDEX "svid_issuances_tenant_idx";--> statement-breakpoint
ALTER TABLE "svid_issuances" ALTER COLUMN "id" SET DATA TYPE bigint;--> statement-breakpoint
ALTER TABLE "svid_issuances" ALTER COLUMN "id" SET DEFAULT nextval('audit_log_id_seq');--> statement-breakpoint
ALTER TABLE "svid_issuances" ADD COLUMN "actor" text;--> statement-breakpoint
ALTER TABLE "svid_issuances" ADD COLUMN "request_id" text;--> statement-breakpoint
ALTER TABLE "svid_issuances" ADD COLUMN "client_request_id" text;--> statement-breakpoint
ALTER TABLE "svid_issuances" ADD COLUMN "revision" bigint;--> statement-breakpoint
CREATE INDEX "svid_issuances_issued_at_idx" ON "svid_issuances" USING btree ("issued_at");--> statement-breakpoint
CREATE INDEX "svid_issuances_tenant_idx" ON "svid_issuances" USING btree ("tenant_id","id");--> statement-breakpoint
-- Issuance records now take audit ids: start past every id either table holds, so none repeats.
SELECT setval('audit_log_id_seq', GREATEST((SELECT coalesce(max(id), 0) FROM audit_log), (SELECT coalesce(max(id), 0) FROM svid_issuances), (SELECT last_value FROM audit_log_id_seq)));--> statement-breakpoint
DROP SEQUENCE IF EXISTS "svid_issuances_id_seq";--> statement-breakpoint
-- Issuance records are audit entries: WEFT_AUDIT_RETENTION prunes them as the log pruner (0015).
GRANT SELECT, UPDATE, DELETE ON svid_issuances TO weft_log_pruner;--> statement-breakpoint
CREATE POLICY log_pruner ON svid_issuances TO weft_log_pruner USING (true) WITH CHECK (false);
