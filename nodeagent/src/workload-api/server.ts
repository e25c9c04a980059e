// SPDX-License-Identifier: Apache-2.0
/**
 * The SPIFFE Workload API on a Unix socket: the service of workload.proto
 * (the SPIFFE project's, restated beside this file), served by @grpc/grpc-js.
 *
 * The agent accepts each connection itself (net.Server), reads the peer's
 * credentials from the kernel (SO_PEERCRED, SO_PEERPIDFD) and hands the
 * socket to the gRPC server through a connection injector; every call is
 * then attested afresh from those credentials (attestor.ts). What a caller
 * sends never selects an identity.
 *
 *   FetchX509SVID     stream: the caller's SVIDs (PKCS#8 DER key, DER chain,
 *                     DER bundle), at once, then a full message on every change
 *   FetchX509Bundles  stream: the caller's trust domain's CA certificates
 *   FetchJWTSVID      a JWT-SVID per caller SVID (or the one spiffe_id asks),
 *                     minted by the API under the node's credential
 *   FetchJWTBundles   stream: the caller's trust domain's JWT keys (JWK set)
 *   ValidateJWTSVID   against the caller's trust domain's JWT keys
 *   FetchWITSVID, FetchWITBundles   UNIMPLEMENTED (the spec allows it)
 *
 * Every call must carry `workload.spiffe.io: true` (INVALID_ARGUMENT
 * otherwise); a caller that is no workload of this node gets
 * PERMISSION_DENIED, on every method.
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, unlinkSync } from "node:fs";
import net from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { closePidfd, peerCred, type PeerCred } from "../kernel/peer.ts";
import type { HeldBundle, HeldSvid, SvidManager } from "../agent/svid.ts";
import type { ApiClient } from "../agent/client.ts";
import { Attestor, type Attestation } from "./attestor.ts";
import { JwtSvidCache, validateJwtSvid, type JwtValidationError } from "./jwt.ts";

export const PROTO_PATH = join(dirname(fileURLToPath(import.meta.url)), "workload.proto");
const SECURITY_HEADER = "workload.spiffe.io";

type Log = (level: "info" | "warn" | "error", msg: string, fields?: Record<string, unknown>) => void;

export interface WorkloadApiOptions {
  socketPath: string;
  svids: SvidManager;
  client: Pick<ApiClient, "issueJwtSvid">;
  attestor?: Attestor;
  log?: Log;
}

/** The loaded service definition, for the server and for clients (tests, tools). */
export function loadWorkloadProto(): grpc.GrpcObject {
  const def = protoLoader.loadSync(PROTO_PATH, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(def);
}

interface Status {
  code: grpc.status;
  details: string;
}
const fail = (code: grpc.status, details: string): Status => ({ code, details });

/** Message fields as proto-loader takes them (keepCase). */
interface X509SvidMessage {
  spiffe_id: string;
  x509_svid: Buffer;
  x509_svid_key: Buffer;
  bundle: Buffer;
  hint: string;
}

export class WorkloadApiServer {
  private readonly grpcServer = new grpc.Server();
  private readonly netServer: net.Server;
  private readonly peers = new Map<string, PeerCred>();
  private readonly attestor: Attestor;
  private readonly jwt: JwtSvidCache;
  private readonly streams = new Set<() => void>();
  private nextConn = 0;
  private readonly log: Log;
  private unsubscribe: (() => void) | null = null;

  constructor(private readonly o: WorkloadApiOptions) {
    this.log = o.log ?? (() => {});
    this.attestor =
      o.attestor ??
      new Attestor({
        workloads: () => o.svids.workloads().map((r) => ({ key: `${r.tenant}/${r.workload}`, addresses: r.addresses ?? [], ...(r.interface ? { interface: r.interface } : {}) })),
      });
    this.jwt = new JwtSvidCache(o.client);
    const proto = loadWorkloadProto();
    const service = (proto.SpiffeWorkloadAPI as grpc.ServiceClientConstructor).service;
    this.grpcServer.addService(service, {
      FetchX509SVID: (call: grpc.ServerWritableStream<unknown, unknown>) => this.stream(call, "FetchX509SVID", (keys) => this.x509SvidMessage(keys)),
      FetchX509Bundles: (call: grpc.ServerWritableStream<unknown, unknown>) => this.stream(call, "FetchX509Bundles", (keys) => this.x509BundlesMessage(keys)),
      FetchJWTBundles: (call: grpc.ServerWritableStream<unknown, unknown>) => this.stream(call, "FetchJWTBundles", (keys) => this.jwtBundlesMessage(keys)),
      FetchJWTSVID: (call: grpc.ServerUnaryCall<{ audience: string[]; spiffe_id: string }, unknown>, done: grpc.sendUnaryData<unknown>) =>
        void this.unary(call, done, (keys) => this.fetchJwtSvid(keys, call.request)),
      ValidateJWTSVID: (call: grpc.ServerUnaryCall<{ audience: string; svid: string }, unknown>, done: grpc.sendUnaryData<unknown>) =>
        void this.unary(call, done, (keys) => this.validateJwtSvid(keys, call.request)),
      FetchWITSVID: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit("error", fail(grpc.status.UNIMPLEMENTED, "WIT-SVIDs are not offered by this agent")),
      FetchWITBundles: (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit("error", fail(grpc.status.UNIMPLEMENTED, "WIT-SVIDs are not offered by this agent")),
    });
    const injector = this.grpcServer.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    this.netServer = net.createServer((socket) => {
      let cred: PeerCred;
      try {
        cred = peerCred((socket as unknown as { _handle: { fd: number } })._handle.fd);
      } catch (err) {
        this.log("warn", "workload API: refused a connection whose peer could not be read", { error: (err as Error).message });
        socket.destroy();
        return;
      }
      // The connection's name, as grpc-js reports it to a call (getPeer): the key of its credentials.
      const id = `weft-workload-api-${++this.nextConn}`;
      Object.defineProperty(socket, "remoteAddress", { value: id });
      this.peers.set(id, cred);
      socket.once("close", () => {
        this.peers.delete(id);
        if (cred.pidfd !== null) closePidfd(cred.pidfd);
      });
      injector.injectConnection(socket);
    });
  }

  /** Binds the socket: its directory made 0755 if missing, the socket 0777 (any local process may ask; attestation decides). */
  async listen(): Promise<void> {
    const path = this.o.socketPath;
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new Error(`failed to serve the Workload API on ${path}: something else than a socket is there`);
      // Another agent serving there keeps it; a socket nobody answers on (left by a crash) is replaced.
      if (await answers(path)) throw new Error(`failed to serve the Workload API on ${path}: another process serves it (another agent?); give --workload-api-socket another path`);
      unlinkSync(path);
    }
    await new Promise<void>((resolve, reject) => {
      this.netServer.once("error", reject);
      this.netServer.listen(path, () => {
        this.netServer.off("error", reject);
        resolve();
      });
    });
    chmodSync(path, 0o777);
    this.unsubscribe = this.o.svids.subscribe(() => {
      this.attestor.invalidate();
      for (const push of this.streams) push();
    });
    this.log("info", "workload API listening", { socket: path });
  }

  async close(): Promise<void> {
    this.unsubscribe?.();
    for (const end of [...this.streams]) end();
    await new Promise<void>((resolve) => this.netServer.close(() => resolve()));
    this.grpcServer.forceShutdown();
    if (existsSync(this.o.socketPath)) unlinkSync(this.o.socketPath);
  }

  /** The header check and the attestation every call begins with. */
  private async admit(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>, method: string): Promise<string[] | Status> {
    const header = call.metadata.get(SECURITY_HEADER);
    if (header.length !== 1 || header[0] !== "true") return fail(grpc.status.INVALID_ARGUMENT, `security header missing from request: ${SECURITY_HEADER}: true`);
    const cred = this.peers.get(call.getPeer());
    if (!cred) return fail(grpc.status.PERMISSION_DENIED, "no peer credentials for this connection");
    let a: Attestation;
    try {
      a = await this.attestor.attest(cred);
    } catch (err) {
      this.log("error", "workload API: attestation failed", { method, pid: cred.pid, error: (err as Error).message });
      return fail(grpc.status.INTERNAL, "attestation failed");
    }
    if (!a.ok) {
      this.log("info", "workload API: caller is no workload", { method, pid: cred.pid, uid: cred.uid, gid: cred.gid, reason: a.reason });
      return fail(grpc.status.PERMISSION_DENIED, "no identity issued");
    }
    return a.workloads;
  }

  /**
   * A server stream: admitted, then the first message as soon as there is
   * one, and a full new message whenever it differs from the last sent. When
   * the caller's workloads all leave the node the stream ends PERMISSION_DENIED.
   */
  private async stream(call: grpc.ServerWritableStream<unknown, unknown>, method: string, build: (keys: readonly string[]) => { message: unknown; fingerprint: string } | Status | null): Promise<void> {
    const admitted = await this.admit(call, method);
    if (!Array.isArray(admitted)) {
      call.emit("error", admitted);
      return;
    }
    const keys = admitted;
    let last: string | null = null;
    let ended = false;
    const end = (status?: Status) => {
      if (ended) return;
      ended = true;
      this.streams.delete(push);
      if (status) call.emit("error", status);
      else call.end();
    };
    const push = () => {
      if (ended) return;
      const current = new Set(this.o.svids.workloads().map((r) => `${r.tenant}/${r.workload}`));
      if (!keys.some((k) => current.has(k))) return end(fail(grpc.status.PERMISSION_DENIED, "no identity issued"));
      const built = build(keys.filter((k) => current.has(k)));
      if (built === null) return; // nothing yet (the SVID is being issued): the first message follows it
      if ("code" in built) return end(built);
      if (built.fingerprint === last) return;
      last = built.fingerprint;
      call.write(built.message);
    };
    this.streams.add(push);
    call.on("cancelled", () => end());
    call.on("close", () => end());
    call.on("error", () => end());
    push();
  }

  private async unary(call: grpc.ServerUnaryCall<unknown, unknown>, done: grpc.sendUnaryData<unknown>, run: (keys: string[]) => Promise<unknown>): Promise<void> {
    const admitted = await this.admit(call, call.getPath());
    if (!Array.isArray(admitted)) return done(admitted);
    try {
      done(null, await run(admitted));
    } catch (err) {
      const e = err as Partial<Status> & Error;
      done(typeof e.code === "number" ? (e as Status) : fail(grpc.status.UNAVAILABLE, e.message));
    }
  }

  private held(keys: readonly string[]): { svids: HeldSvid[]; bundles: Map<string, HeldBundle> } {
    const svids: HeldSvid[] = [];
    const bundles = new Map<string, HeldBundle>();
    for (const key of keys) {
      const s = this.o.svids.svidOf(key);
      if (!s) continue;
      const b = this.o.svids.bundle(s.ref.tenant);
      if (!b) continue;
      svids.push(s);
      bundles.set(s.trustDomain, b);
    }
    return { svids, bundles };
  }

  private x509SvidMessage(keys: readonly string[]) {
    const { svids, bundles } = this.held(keys);
    if (svids.length === 0) return null;
    const out: X509SvidMessage[] = svids.map((s) => ({
      spiffe_id: s.spiffeId,
      x509_svid: Buffer.concat(s.chainDer),
      x509_svid_key: s.keyDer,
      bundle: Buffer.concat(bundles.get(s.trustDomain)!.x509),
      hint: "",
    }));
    const fingerprint = svids.map((s) => `${s.spiffeId}#${s.serial}#${bundles.get(s.trustDomain)!.version}`).join(",");
    // Federated trust domains of every tenant the caller's SVIDs belong to; never one of those trust domains themselves.
    const federated: Record<string, Buffer> = {};
    for (const [, b] of bundles) for (const [td, f] of b.federated) if (!bundles.has(td)) federated[`spiffe://${td}`] = Buffer.concat(f.x509);
    return { message: { svids: out, crl: [], federated_bundles: federated }, fingerprint };
  }

  private x509BundlesMessage(keys: readonly string[]) {
    const { svids, bundles } = this.held(keys);
    if (svids.length === 0) return null;
    const out: Record<string, Buffer> = {};
    for (const [, b] of bundles) for (const [td, f] of b.federated) if (!bundles.has(td) && f.x509.length > 0) out[`spiffe://${td}`] = Buffer.concat(f.x509);
    for (const [td, b] of bundles) out[`spiffe://${td}`] = Buffer.concat(b.x509);
    return { message: { crl: [], bundles: out }, fingerprint: [...bundles].map(([td, b]) => `${td}#${b.version}`).join(",") };
  }

  private jwtBundlesMessage(keys: readonly string[]) {
    const { svids, bundles } = this.held(keys);
    if (svids.length === 0) return null;
    const out: Record<string, Buffer> = {};
    for (const [, b] of bundles) for (const [td, f] of b.federated) if (!bundles.has(td)) out[`spiffe://${td}`] = Buffer.from(JSON.stringify({ keys: f.jwtKeys }));
    for (const [td, b] of bundles) out[`spiffe://${td}`] = Buffer.from(JSON.stringify({ keys: b.jwtKeys }));
    return { message: { bundles: out }, fingerprint: [...bundles].map(([td, b]) => `${td}#${b.version}`).join(",") };
  }

  private async fetchJwtSvid(keys: readonly string[], req: { audience: string[]; spiffe_id: string }) {
    const audience = (req.audience ?? []).filter((a) => a !== "");
    if (audience.length === 0) throw fail(grpc.status.INVALID_ARGUMENT, "audience must be specified");
    if (req.spiffe_id) {
      try {
        if (new URL(req.spiffe_id).protocol !== "spiffe:") throw new Error();
      } catch {
        throw fail(grpc.status.INVALID_ARGUMENT, `spiffe_id ${JSON.stringify(req.spiffe_id)} is not a SPIFFE ID`);
      }
    }
    const refs = this.o.svids.workloads().filter((r) => keys.includes(`${r.tenant}/${r.workload}`));
    const svids: { spiffe_id: string; svid: string; hint: string }[] = [];
    for (const ref of refs) {
      const spiffeId = this.o.svids.svidOf(`${ref.tenant}/${ref.workload}`)?.spiffeId ?? ref.spiffeId;
      if (!spiffeId) continue;
      if (req.spiffe_id && req.spiffe_id !== spiffeId) continue;
      svids.push({ spiffe_id: spiffeId, svid: await this.jwt.get(ref.tenant, ref.identity, spiffeId, audience), hint: "" });
    }
    // As SPIRE: asking for an ID the caller is not entitled to is PERMISSION_DENIED, whatever it names.
    if (svids.length === 0) throw fail(grpc.status.PERMISSION_DENIED, "no identity issued");
    return { svids };
  }

  private async validateJwtSvid(keys: readonly string[], req: { audience: string; svid: string }) {
    if (!req.audience) throw fail(grpc.status.INVALID_ARGUMENT, "audience must be specified");
    if (!req.svid) throw fail(grpc.status.INVALID_ARGUMENT, "svid must be specified");
    const { bundles } = this.held(keys);
    // As SPIRE: every bundle the caller holds, its own trust domains' first, then federated ones.
    const federatedKeys = (td: string) => [...bundles.values()].map((b) => b.federated.get(td)?.jwtKeys).find((k) => k !== undefined);
    const result = await validateJwtSvid(req.svid, req.audience, (td) => bundles.get(td)?.jwtKeys ?? federatedKeys(td));
    if ("error" in result) throw fail(grpc.status.INVALID_ARGUMENT, (result as JwtValidationError).error);
    return { spiffe_id: result.spiffeId, claims: toStruct(result.claims) };
  }
}

/** Whether something accepts connections on the Unix socket `path`. */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = net.connect(path);
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
}

/** JSON -> google.protobuf.Struct as proto-loader takes it. */
function toStruct(obj: Record<string, unknown>): { fields: Record<string, unknown> } {
  const value = (v: unknown): unknown => {
    if (v === null || v === undefined) return { nullValue: "NULL_VALUE" };
    if (typeof v === "number") return { numberValue: v };
    if (typeof v === "string") return { stringValue: v };
    if (typeof v === "boolean") return { boolValue: v };
    if (Array.isArray(v)) return { listValue: { values: v.map(value) } };
    return { structValue: toStruct(v as Record<string, unknown>) };
  };
  return { fields: Object.fromEntries(Object.entries(obj).map(([k, v]) => [k, value(v)])) };
}
