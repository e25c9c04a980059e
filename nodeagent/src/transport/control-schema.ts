// SPDX-License-Identifier: Apache-2.0
/**
 * The control channel between the agent and its transport: JSON lines on
 * the transport's stdin, one answer line per request on its stdout.
 *
 * Why stdin and not a unix socket: the agent spawns the transport, so the
 * pipe exists between those two processes only. There is no path on disk
 * whose permissions could let another local process push keys or allowed
 * pairs, and the agent's exit closes the pipe, on which the transport exits
 * instead of carrying traffic on state nobody can rotate any more.
 *
 * `configure` carries the whole desired state each time (like the node's
 * datapath document): applied all at once or not at all.
 */
import { Type, type Static } from "@sinclair/typebox";
import type { HandshakeFailure, StreamResult } from "./metrics.ts";

const Pem = Type.String({ minLength: 1, maxLength: 64 * 1024 });
/** Dotted IPv4; each octet's range is checked by net.isIPv4 when the state is built. */
const Ipv4 = Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}$", maxLength: 15 });
const SpiffeIdString = Type.String({ pattern: "^spiffe://", maxLength: 2048 });
const Port = Type.Integer({ minimum: 1, maximum: 65535 });
/** host:port of a peer node's transport (IPv4 for now). */
const Endpoint = Type.String({ pattern: "^\\d{1,3}(\\.\\d{1,3}){3}:\\d{1,5}$", maxLength: 21 });

export const LocalWorkload = Type.Object(
  {
    spiffeId: SpiffeIdString,
    addresses: Type.Array(Ipv4, { minItems: 1, maxItems: 16 }),
    /** PKCS#8 or SEC1 private key of the SVID. */
    keyPem: Pem,
    /** The SVID leaf first, then any intermediates. */
    chainPem: Pem,
  },
  { additionalProperties: false },
);

export const TrustBundle = Type.Object(
  {
    trustDomain: Type.String({ pattern: "^[a-z0-9._-]{1,255}$" }),
    /** The trust domain's CA certificates. */
    caPem: Pem,
  },
  { additionalProperties: false },
);

/** A workload on another node: where its node's transport listens and who it is. */
export const RemoteWorkload = Type.Object(
  { address: Ipv4, spiffeId: SpiffeIdString, node: Endpoint },
  { additionalProperties: false },
);

/** Source identity may open streams to destination identity (on these ports; all when absent). */
export const AllowedPair = Type.Object(
  { source: SpiffeIdString, destination: SpiffeIdString, ports: Type.Optional(Type.Array(Port, { minItems: 1, maxItems: 64 })) },
  { additionalProperties: false },
);

/** The SVID of this node's L7 proxy in one trust domain (spiffe://<td>/weft/node/<node>/proxy). */
export const ProxySvid = Type.Object({ spiffeId: SpiffeIdString, keyPem: Pem, chainPem: Pem }, { additionalProperties: false });

/**
 * The node's L7 proxy's hops the transport carries (issue 21): out, to
 * `targets` (backends on other nodes), each taken on a unix socket of its
 * own (proxy-targets.ts) and opened presenting the proxy's SVID of the
 * target's trust domain; in, from any node's proxy of a trust domain to the
 * local workloads `allow` names, delivered from this node's proxy `address`.
 */
export const ProxyHops = Type.Object(
  {
    address: Ipv4,
    targets: Type.Array(Endpoint, { maxItems: 65536 }),
    allow: Type.Array(
      Type.Object({ destination: SpiffeIdString, ports: Type.Optional(Type.Array(Port, { minItems: 1, maxItems: 64 })) }, { additionalProperties: false }),
      { maxItems: 65536 },
    ),
  },
  { additionalProperties: false },
);

export const TransportConfig = Type.Object(
  {
    workloads: Type.Array(LocalWorkload, { maxItems: 4096 }),
    bundles: Type.Array(TrustBundle, { maxItems: 1024 }),
    remotes: Type.Array(RemoteWorkload, { maxItems: 65536 }),
    allow: Type.Array(AllowedPair, { maxItems: 65536 }),
    proxy: Type.Optional(ProxyHops),
    /** The node proxy's SVIDs, one per trust domain of a target (the agent's own, like `workloads`). */
    proxySvids: Type.Optional(Type.Array(ProxySvid, { maxItems: 1024 })),
  },
  { additionalProperties: false },
);
export type TransportConfig = Static<typeof TransportConfig>;

const Id = Type.Integer({ minimum: 0 });

export const ControlRequest = Type.Union([
  Type.Object({ id: Id, op: Type.Literal("configure"), config: TransportConfig }, { additionalProperties: false }),
  /**
   * The origin of one connection the outbound listener will accept from
   * `peer` (its local ip:port) on the listener's own address: the source
   * workload's address and the original destination. Connections the kernel
   * steers carry their origin in the socket (origins.ts); this record is for
   * connections nobody steered (the loopback tests).
   */
  Type.Object(
    { id: Id, op: Type.Literal("steer"), peer: Endpoint, source: Ipv4, destination: Endpoint },
    { additionalProperties: false },
  ),
  Type.Object({ id: Id, op: Type.Literal("metrics") }, { additionalProperties: false }),
  /** Drains the stream outcomes kept since the last `events` (outcomes.ts). */
  Type.Object({ id: Id, op: Type.Literal("events") }, { additionalProperties: false }),
]);
export type ControlRequest = Static<typeof ControlRequest>;

const Count = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
/** Milliseconds since the epoch. */
const EpochMs = Type.Integer({ minimum: 0, maximum: 8_640_000_000_000_000 });

/**
 * How one stream ended, or one handshake that never carried a stream:
 * "carried", or the refusal reason the metrics count it under
 * (weft_transport_streams_total's result, weft_transport_handshake_failures_total's reason).
 */
const OutcomeResult = Type.Unsafe<StreamResult | HandshakeFailure>(Type.String({ pattern: "^[a-z_]{1,40}$" }));

/**
 * One stream outcome (or a refused handshake: `handshake` true). Outbound,
 * the source is the local workload that opened the connection; inbound, it
 * is the workload the peer transport vouched for (its address only when the
 * peer proved it owns it) and, for a refused handshake, the peer node's
 * socket. Bytes are payload: toPeer read from the local side, fromPeer
 * written to it.
 */
export const TransportOutcome = Type.Object(
  {
    direction: Type.Union([Type.Literal("outbound"), Type.Literal("inbound")]),
    handshake: Type.Boolean(),
    result: OutcomeResult,
    source: Type.Object(
      { address: Type.Optional(Ipv4), port: Type.Optional(Port), spiffeId: Type.Optional(SpiffeIdString) },
      { additionalProperties: false },
    ),
    destination: Type.Optional(Type.Object({ address: Ipv4, port: Port }, { additionalProperties: false })),
    bytes: Type.Object({ toPeer: Count, fromPeer: Count }, { additionalProperties: false }),
    start: EpochMs,
    end: EpochMs,
  },
  { additionalProperties: false },
);
export type TransportOutcome = Static<typeof TransportOutcome>;

/** The `events` answer: the outcomes in the order they ended, and how many the full buffer dropped since the last drain. */
export const OutcomeDrain = Type.Object(
  { events: Type.Array(TransportOutcome), lost: Count },
  { additionalProperties: false },
);
export type OutcomeDrain = Static<typeof OutcomeDrain>;

export interface ControlAnswer extends Partial<OutcomeDrain> {
  id: number | null;
  ok: boolean;
  error?: string;
  metrics?: string;
}
