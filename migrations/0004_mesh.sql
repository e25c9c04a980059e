CREATE TABLE "backend_ids" (
	"endpoint" text PRIMARY KEY NOT NULL,
	"id" serial NOT NULL,
	CONSTRAINT "backend_ids_id_unique" UNIQUE("id")
);
--> statement-breakpoint
CREATE TABLE "cidr_identities" (
	"cidr" text PRIMARY KEY NOT NULL,
	"numeric_id" bigint DEFAULT nextval('security_identity_seq') NOT NULL,
	CONSTRAINT "cidr_identities_numeric_id_unique" UNIQUE("numeric_id")
);
--> statement-breakpoint
CREATE TABLE "join_tokens" (
	"id" uuid PRIMARY KEY NOT NULL,
	"token_hash" text NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"used_at" timestamp with time zone,
	"used_by" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "join_tokens_token_hash_unique" UNIQUE("token_hash")
);
--> statement-breakpoint
CREATE TABLE "nodes" (
	"name" text PRIMARY KEY NOT NULL,
	"zone" text NOT NULL,
	"labels" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"credential_hash" text NOT NULL,
	"revision" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"applied_revision" bigint,
	"applied_hash" text,
	"converged_since" timestamp with time zone,
	"status" jsonb,
	"status_at" timestamp with time zone,
	CONSTRAINT "nodes_credential_hash_unique" UNIQUE("credential_hash")
);
--> statement-breakpoint
CREATE TABLE "policies" (
	"id" serial PRIMARY KEY NOT NULL,
	"tenant_id" bigint NOT NULL,
	"name" text NOT NULL,
	"subject" jsonb NOT NULL,
	"ingress" jsonb,
	"egress" jsonb,
	"revision" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "policies_tenant_name_unique" UNIQUE("tenant_id","name")
);
--> statement-breakpoint
CREATE TABLE "services" (
	"id" serial PRIMARY KEY NOT NULL,
	"tenant_id" bigint NOT NULL,
	"name" text NOT NULL,
	"vip" text NOT NULL,
	"vip_allocated" boolean DEFAULT false NOT NULL,
	"ports" jsonb NOT NULL,
	"backends" jsonb NOT NULL,
	"load_balancing" text DEFAULT 'random' NOT NULL,
	"prefer_same_zone" boolean DEFAULT false NOT NULL,
	"revision" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "services_vip_unique" UNIQUE("vip"),
	CONSTRAINT "services_tenant_name_unique" UNIQUE("tenant_id","name")
);
--> statement-breakpoint
CREATE TABLE "workloads" (
	"tenant_id" bigint NOT NULL,
	"name" text NOT NULL,
	"identity" text NOT NULL,
	"node" text NOT NULL,
	"addresses" text[] NOT NULL,
	"interface" text,
	"revision" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "workloads_tenant_id_name_pk" PRIMARY KEY("tenant_id","name")
);
--> statement-breakpoint
ALTER TABLE "tenants" ADD COLUMN "default_action" text DEFAULT 'allow' NOT NULL;--> statement-breakpoint
ALTER TABLE "policies" ADD CONSTRAINT "policies_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "services" ADD CONSTRAINT "services_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "workloads" ADD CONSTRAINT "workloads_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "workloads_node_idx" ON "workloads" USING btree ("node");