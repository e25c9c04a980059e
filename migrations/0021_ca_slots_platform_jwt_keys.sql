-- The compiler (platform role) reads each tenant's JWT-SVID public keys for
-- the L7 proxy's JWT rules (follower/jwt-keys.ts). It may read those columns
-- only: never a sealed private key, even under the KEK.
REVOKE SELECT ON ca_slots FROM weft_platform;--> statement-breakpoint
GRANT SELECT (tenant_id, id, jwt_kid, jwt_public_key_spki) ON ca_slots TO weft_platform;--> statement-breakpoint
CREATE POLICY platform_read ON ca_slots FOR SELECT TO weft_platform USING (true);
