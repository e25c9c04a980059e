-- The follower (platform role) reads each tenant's CA certificates for the
-- node transports' trust bundles (follower/ca-roots.ts), in the order the
-- bundle lists them. Certificates are public (GET .../bundle.pem); the sealed
-- keys stay out of reach, as 0021 left them.
GRANT SELECT (ca_cert_der, not_before, created_at) ON ca_slots TO weft_platform;
