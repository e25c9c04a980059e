CREATE SEQUENCE "public"."security_identity_seq" INCREMENT BY 1 MINVALUE 256 MAXVALUE 4294967295 START WITH 256 CACHE 1;--> statement-breakpoint
CREATE TABLE "ca_authorities" (
	"tenant_id" bigint PRIMARY KEY NOT NULL,
	"sequence" bigint NOT NULL,
	"revision" bigint NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "ca_slots" (
	"tenant_id" bigint NOT NULL,
	"id" uuid NOT NULL,
	"status" text NOT NULL,
	"not_before" timestamp with time zone NOT NULL,
	"not_after" timestamp with time zone NOT NULL,
	"max_issued_not_after" timestamp with time zone,
	"ca_cert_der" text NOT NULL,
	"ca_key_sealed" text NOT NULL,
	"jwt_kid" text NOT NULL,
	"jwt_public_key_spki" text NOT NULL,
	"jwt_key_sealed" text NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "ca_slots_tenant_id_id_pk" PRIMARY KEY("tenant_id","id")
);
--> statement-breakpoint
CREATE TABLE "identities" (
	"tenant_id" bigint NOT NULL,
	"name" text NOT NULL,
	"path" text NOT NULL,
	"selectors" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"security_identity" bigint DEFAULT nextval('security_identity_seq') NOT NULL,
	"x509_svid_ttl_seconds" integer,
	"jwt_svid_ttl_seconds" integer,
	"revision" bigint NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "identities_tenant_id_name_pk" PRIMARY KEY("tenant_id","name"),
	CONSTRAINT "identities_security_identity_unique" UNIQUE("security_identity"),
	CONSTRAINT "identities_tenant_path_unique" UNIQUE("tenant_id","path")
);
--> statement-breakpoint
CREATE TABLE "svid_issuances" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" bigint NOT NULL,
	"slot_id" uuid NOT NULL,
	"kind" text NOT NULL,
	"identity_name" text NOT NULL,
	"spiffe_id" text NOT NULL,
	"serial" text,
	"issued_at" timestamp with time zone NOT NULL,
	"expires_at" timestamp with time zone NOT NULL
);
--> statement-breakpoint
ALTER TABLE "ca_authorities" ADD CONSTRAINT "ca_authorities_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "ca_slots" ADD CONSTRAINT "ca_slots_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "identities" ADD CONSTRAINT "identities_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "svid_issuances" ADD CONSTRAINT "svid_issuances_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "svid_issuances_tenant_idx" ON "svid_issuances" USING btree ("tenant_id","issued_at");