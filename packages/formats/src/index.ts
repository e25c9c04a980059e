/**
 * The string formats of the API's contract. The OpenAPI document names them
 * (format: dns-label, ipv4, ipv4-prefix) but cannot carry their patterns, so
 * the API's validator and the Terraform provider's plan-time checks take
 * them from here: one definition, and neither part imports the other.
 */

/** DNS label (RFC 1123): the shape of every resource name. */
export const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
export const DNS_LABEL_MESSAGE =
  "must be a DNS label: 1 to 63 lowercase letters, digits or '-', starting and ending with a letter or digit";

const OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
const IPV4 = `${OCTET}(\\.${OCTET}){3}`;

/** Custom formats, with the message each failure should read as. */
export const FORMATS: Record<string, { pattern: RegExp; message: string }> = {
  "dns-label": { pattern: DNS_LABEL, message: DNS_LABEL_MESSAGE },
  // Dotted quad without leading zeros: "010.0.0.1" reads as octal to some tools, so it is refused.
  ipv4: { pattern: new RegExp(`^${IPV4}$`), message: "must be an IPv4 address in dotted-quad form, e.g. 10.0.0.7" },
  "ipv4-prefix": {
    pattern: new RegExp(`^${IPV4}/(3[0-2]|[12]?[0-9])$`),
    message: "must be an IPv4 prefix, e.g. 10.0.0.0/8",
  },
};
