// @weft/pki: DER, X.509 and PKCS#10 encoding shared by the API's CA, the node
// agent and the Terraform provider. Encoding only; no policy (what a SPIFFE
// X.509-SVID must contain, what the CA accepts) lives here.
export * from "./der.ts";
export * from "./x509.ts";
export * from "./pkcs10.ts";
export * from "./csr.ts";
