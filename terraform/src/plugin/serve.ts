// Serves a ProviderHandler the way hashicorp/go-plugin serves a Go provider:
// gRPC over mutual TLS on a unix socket, announced by the handshake line,
// with go-plugin's own services beside tfplugin6.Provider (the controller
// Terraform calls to shut the plugin down, the stdio and broker streams its
// client opens at connect, and the health check it pings).
import {
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  type UntypedServiceImplementation,
  type sendUnaryData,
  status,
} from "@grpc/grpc-js";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ProviderHandler } from "../framework.ts";
import { selfSignedCertificate } from "./certificate.ts";
import { type PluginEnvironment, handshakeLine } from "./handshake.ts";
import { loadProtocol } from "./protocol.ts";
import { PROVIDER_RPCS, ProviderService } from "./provider-service.ts";

/** go-plugin's GRPCServiceName: the health check asks for it. */
const HEALTH_SERVICE_NAME = "plugin";
/** Schemas and states can be large; go-plugin's client lifts its own limits to 2 GiB. */
const MAX_MESSAGE_BYTES = 256 * 1024 * 1024;

export interface ServeOptions {
  /** Where the handshake line goes (stdout). */
  announce?: (line: string) => void;
  /** Diagnostics for TF_LOG (stderr, which go-plugin logs line by line). */
  log?: (message: string) => void;
}

export interface RunningPlugin {
  socketPath: string;
  serverCertDer: Buffer;
  handshake: string;
  /** Resolves once the server has stopped (Terraform's Shutdown call, or shutdown()). */
  done: Promise<void>;
  shutdown(): Promise<void>;
}

type Unary = (req: Record<string, unknown>) => Promise<Record<string, unknown>>;

function unary(fn: Unary, log: (m: string) => void, name: string) {
  return (call: ServerUnaryCall<Record<string, unknown>, unknown>, callback: sendUnaryData<unknown>): void => {
    fn(call.request).then(
      (res) => callback(null, res),
      (e: unknown) => {
        // Handlers turn failures into diagnostics; reaching this is a bug in the plugin layer.
        log(`${name} failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
        callback({ code: status.INTERNAL, details: `${name}: ${e instanceof Error ? e.message : String(e)}` });
      },
    );
  };
}

export async function serve(provider: ProviderHandler, env: PluginEnvironment, opts: ServeOptions = {}): Promise<RunningPlugin> {
  const announce = opts.announce ?? ((line: string) => process.stdout.write(`${line}\n`));
  const log = opts.log ?? ((m: string) => process.stderr.write(`[weft-provider] ${m}\n`));
  const protocol = loadProtocol();
  const service = new ProviderService(provider);
  const cert = selfSignedCertificate();

  const server = new Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });

  const providerImpl: UntypedServiceImplementation = {};
  for (const rpc of PROVIDER_RPCS) providerImpl[rpc] = unary((req) => service[rpc](req), log, rpc);
  server.addService(protocol.provider.service, providerImpl);

  // Streams the client holds open for the plugin's lifetime; ended at shutdown.
  const openStreams = new Set<ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>>();
  const hold = (s: ServerWritableStream<unknown, unknown> | ServerDuplexStream<unknown, unknown>): void => {
    openStreams.add(s);
    const forget = (): void => void openStreams.delete(s);
    s.on("cancelled", forget);
    s.on("error", forget);
    s.on("close", forget);
  };
  // Nothing is copied to it: our stdout and stderr reach Terraform's log directly.
  server.addService(protocol.stdio.service, { StreamStdio: hold });
  // Providers never offer extra connections; what the client sends is ignored.
  server.addService(protocol.broker.service, {
    StartStream: (s: ServerDuplexStream<unknown, unknown>) => {
      s.on("data", () => {});
      s.on("end", () => s.end());
      hold(s);
    },
  });
  server.addService(protocol.health.service, {
    Check: (call: ServerUnaryCall<{ service: string }, unknown>, callback: sendUnaryData<unknown>) => {
      if (call.request.service === "" || call.request.service === HEALTH_SERVICE_NAME) callback(null, { status: "SERVING" });
      else callback({ code: status.NOT_FOUND, details: `unknown service ${call.request.service}` });
    },
  });

  const dir = mkdtempSync(join(env.socketParent ?? tmpdir(), "weft-provider-"));
  const socketPath = join(dir, "plugin.sock");

  let finished!: () => void;
  const done = new Promise<void>((r) => (finished = r));
  let stopping = false;
  const shutdown = (): Promise<void> => {
    if (stopping) return done;
    stopping = true;
    for (const s of openStreams) s.end();
    openStreams.clear();
    const finish = (): void => {
      rmSync(dir, { recursive: true, force: true });
      finished();
    };
    // Let answers in flight (the Shutdown reply itself) go out, then cut what is left.
    const force = setTimeout(() => {
      server.forceShutdown();
      finish();
    }, 2000);
    force.unref();
    server.tryShutdown(() => {
      clearTimeout(force);
      finish();
    });
    return done;
  };

  server.addService(protocol.controller.service, {
    Shutdown: (_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) => {
      callback(null, {});
      setImmediate(() => void shutdown());
    },
  });

  // The client must present Terraform's certificate: it is the only trust anchor.
  const credentials = ServerCredentials.createSsl(
    Buffer.from(env.clientCertPem),
    [{ private_key: Buffer.from(cert.keyPem), cert_chain: Buffer.from(cert.certPem) }],
    true,
  );
  try {
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${socketPath}`, credentials, (err) => (err ? reject(err) : resolve())),
    );
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  const handshake = handshakeLine(socketPath, cert.der);
  announce(handshake);
  return { socketPath, serverCertDer: cert.der, handshake, done, shutdown };
}
