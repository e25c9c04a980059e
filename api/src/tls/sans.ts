// The subject alternative names of the API's self-issued serving certificate
// (WEFT_TLS_SAN): what clients may call the API by. Parsed here, encoded in
// tls/serving-cert.ts.
import { isIP } from "node:net";

export type San = { type: "dns"; value: string } | { type: "ip"; value: string };

/** A DNS name a client may dial: lowercase labels, an optional leading "*." wildcard (RFC 6125 6.4.3). */
const DNS_NAME = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** "dns:weft.example,ip:198.18.0.1" as SANs; a string naming the bad entry when it is not one. */
export function parseSans(text: string): San[] | string {
  const sans: San[] = [];
  for (const raw of text.split(",")) {
    const entry = raw.trim();
    const colon = entry.indexOf(":");
    const kind = entry.slice(0, colon).toLowerCase();
    const value = entry.slice(colon + 1);
    if (colon > 0 && kind === "dns" && value.length <= 253 && DNS_NAME.test(value)) sans.push({ type: "dns", value });
    else if (colon > 0 && kind === "ip" && isIP(value) !== 0) sans.push({ type: "ip", value });
    else return `"${entry}" is not dns:NAME (lowercase) or ip:ADDRESS`;
  }
  return sans;
}

const UNSPECIFIED = new Set(["0.0.0.0", "::"]);

/**
 * The names a client on this machine or on the listening address would dial:
 * localhost and the loopback addresses, and HOST itself unless it is a
 * wildcard address (whose real names only the operator knows: WEFT_TLS_SAN).
 */
export function defaultSans(host: string): San[] {
  const sans: San[] = [
    { type: "dns", value: "localhost" },
    { type: "ip", value: "127.0.0.1" },
    { type: "ip", value: "::1" },
  ];
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  const known = sans.some((s) => s.value === bare);
  if (!known && !UNSPECIFIED.has(bare)) {
    if (isIP(bare) !== 0) sans.push({ type: "ip", value: bare });
    else if (DNS_NAME.test(bare.toLowerCase())) sans.push({ type: "dns", value: bare.toLowerCase() });
  }
  return sans;
}

/** Whether the listening address keeps plain HTTP on this machine: loopback only (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const bare = host.replace(/^\[(.*)\]$/, "$1").toLowerCase();
  if (bare === "localhost" || bare === "::1") return true;
  return isIP(bare) === 4 && bare.startsWith("127.");
}
