CREATE INDEX "change_log_revision_idx" ON "change_log" USING btree ("revision");--> statement-breakpoint
-- The datapath service follows the change log of every tenant (read-only,
-- in transactions that set weft.platform_read, as 0005 does for the rows).
CREATE POLICY platform_read ON change_log FOR SELECT USING (weft_platform_read());
