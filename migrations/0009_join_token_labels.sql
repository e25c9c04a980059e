ALTER TABLE "join_tokens" ADD COLUMN "labels" jsonb DEFAULT '{}'::jsonb NOT NULL;--> statement-breakpoint
ALTER TABLE "join_tokens" ADD COLUMN "name" text;--> statement-breakpoint
ALTER TABLE "join_tokens" ADD COLUMN "zone" text;