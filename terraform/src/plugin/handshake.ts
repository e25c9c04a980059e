// hashicorp/go-plugin's start-up handshake, the plugin side. Terraform
// starts the provider with a magic cookie, the protocol versions it speaks
// and its client certificate in the environment, then reads one line from
// the provider's stdout:
//
//   CORE-VERSION|APP-VERSION|NETWORK|ADDRESS|PROTOCOL|SERVER-CERT
//   1|6|unix|/tmp/weft-provider-XXXX/plugin.sock|grpc|MIIB...(DER, base64, no padding)
//
// Kept free of gRPC so a refusal costs nothing to load.
import { X509Certificate } from "node:crypto";

/** hashicorp/terraform internal/plugin6/serve.go Handshake; "should NEVER be changed". */
export const MAGIC_COOKIE_KEY = "TF_PLUGIN_MAGIC_COOKIE";
export const MAGIC_COOKIE_VALUE = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/** go-plugin's CoreProtocolVersion. */
export const CORE_PROTOCOL_VERSION = 1;
/** Terraform plugin protocol major version. */
export const PROTOCOL_VERSION = 6;

export class HandshakeError extends Error {
  override name = "HandshakeError";
}

export interface PluginEnvironment {
  /** Terraform's AutoMTLS client certificate, the only one the server trusts. */
  clientCertPem: string;
  /** Where the socket's directory goes: PLUGIN_UNIX_SOCKET_DIR when go-plugin sets it, else the OS temp dir. */
  socketParent: string | null;
}

/**
 * Checks what go-plugin's client puts in the environment; throws a
 * HandshakeError meant for a person who ran the binary by hand.
 */
export function checkEnvironment(env: NodeJS.ProcessEnv): PluginEnvironment {
  if (env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    throw new HandshakeError(
      "terraform-provider-weft is a Terraform plugin, not a program to run by hand: Terraform starts it " +
        `(with ${MAGIC_COOKIE_KEY} set) when a configuration uses the weft/weft provider. ` +
        "To try it, point Terraform at it with a dev_overrides block in a CLI configuration file (see the README).",
    );
  }
  const offered = env.PLUGIN_PROTOCOL_VERSIONS;
  if (offered && !offered.split(",").map((v) => v.trim()).includes(String(PROTOCOL_VERSION))) {
    throw new HandshakeError(
      `Terraform offers plugin protocol versions ${offered}; terraform-provider-weft speaks only version ${PROTOCOL_VERSION} (Terraform 1.0 or newer).`,
    );
  }
  const clientCertPem = env.PLUGIN_CLIENT_CERT;
  if (!clientCertPem) {
    throw new HandshakeError("PLUGIN_CLIENT_CERT is not set: terraform-provider-weft serves only over mutual TLS (go-plugin AutoMTLS).");
  }
  try {
    new X509Certificate(clientCertPem);
  } catch (e) {
    throw new HandshakeError(`PLUGIN_CLIENT_CERT is not a PEM certificate: ${(e as Error).message}`);
  }
  return { clientCertPem, socketParent: env.PLUGIN_UNIX_SOCKET_DIR || null };
}

/** The certificate field: DER, standard base64 without padding (Go's base64.RawStdEncoding). */
export const certField = (der: Uint8Array): string => Buffer.from(der).toString("base64").replace(/=+$/, "");

/** The line go-plugin's client waits for on stdout. */
export function handshakeLine(socketPath: string, serverCertDer: Uint8Array): string {
  if (socketPath.includes("|") || socketPath.includes("\n")) throw new HandshakeError(`socket path ${socketPath} cannot be announced`);
  return `${CORE_PROTOCOL_VERSION}|${PROTOCOL_VERSION}|unix|${socketPath}|grpc|${certField(serverCertDer)}`;
}
