// SPDX-License-Identifier: Apache-2.0
/**
 * Entry of the per-node transport process (issue #18), spawned by the agent:
 *
 *   node nodeagent/src/transport/main.ts [--inbound HOST:PORT] [--outbound HOST:PORT]
 *        [--key-exchange post-quantum|post-quantum-or-classical] [--deliver transparent|plain]
 *        [--proxy-dir DIR]
 *
 * The defaults are the ABI's (the codec's constants): inbound
 * 0.0.0.0:TRANSPORT_INBOUND_PORT, outbound TRANSPORT_OUTBOUND_ADDR:PORT, where
 * the datapath steers; every socket marked MARK_TRANSPORT (sockets.ts).
 *
 * --deliver transparent (the default) connects to a local workload from the
 * source address the peer proved (sockets.ts); if that fails the stream
 * is refused, never delivered from another address than the receiver's
 * policy would expect. plain always connects from the node's address.
 *
 * --proxy-dir: where the node's L7 proxy hands over its connections to
 * backends on other nodes, one unix socket per target (proxy-targets.ts);
 * absent, the proxy's hops are not taken.
 *
 * Prints one JSON line {"ready":true,"inbound":PORT,"outbound":PORT} on
 * stdout, then serves the control channel (control-schema.ts) on stdin and
 * stdout; exits when stdin closes (the agent is gone).
 */
import { parseArgs } from "node:util";
import { INBOUND_PORT, MARK_TRANSPORT, OUTBOUND_LISTENER } from "./abi.ts";
import { serveControl } from "./control.ts";
import { deliverer } from "./deliver.ts";
import { parseEndpoint, type Endpoint } from "./endpoint.ts";
import { Transport } from "./transport.ts";
import { KeyExchangeUnavailable, type KeyExchange } from "./tls-policy.ts";

/** A listening endpoint from a flag; port 0 lets the kernel pick (tests). */
function listenAt(value: string, what: string): Endpoint {
  const e = parseEndpoint(value, { anyPort: true });
  if (!e) {
    console.error(`--${what} wants IPV4:PORT, not ${JSON.stringify(value)}`);
    process.exit(2);
  }
  return e;
}

const { values } = parseArgs({
  options: {
    inbound: { type: "string", default: `0.0.0.0:${INBOUND_PORT}` },
    outbound: { type: "string", default: `${OUTBOUND_LISTENER.address}:${OUTBOUND_LISTENER.port}` },
    "key-exchange": { type: "string", default: "post-quantum" },
    deliver: { type: "string", default: "transparent" },
    "proxy-dir": { type: "string" },
  },
});
const keyExchange = values["key-exchange"];
if (keyExchange !== "post-quantum" && keyExchange !== "post-quantum-or-classical") {
  console.error(`--key-exchange is post-quantum or post-quantum-or-classical, not ${JSON.stringify(keyExchange)}`);
  process.exit(2);
}

if (values.deliver !== "transparent" && values.deliver !== "plain") {
  console.error(`--deliver is transparent or plain, not ${JSON.stringify(values.deliver)}`);
  process.exit(2);
}

let transport: Transport;
try {
  transport = new Transport({
    inbound: listenAt(values.inbound, "inbound"),
    outbound: listenAt(values.outbound, "outbound"),
    keyExchange: keyExchange as KeyExchange,
    deliver: deliverer(values.deliver, MARK_TRANSPORT),
    mark: MARK_TRANSPORT,
    ...(values["proxy-dir"] === undefined ? {} : { proxyDir: values["proxy-dir"] }),
  });
} catch (err) {
  if (!(err instanceof KeyExchangeUnavailable)) throw err;
  console.error(err.message);
  process.exit(2);
}
let ports: { inbound: number; outbound: number };
try {
  ports = await transport.listen();
} catch (err) {
  // One line for the agent's log (a port taken, no CAP_NET_ADMIN for the marks), not a stack.
  console.error(`failed to listen: ${(err as Error).message}`);
  process.exit(1);
}
process.stdout.write(`${JSON.stringify({ ready: true, ...ports })}\n`);
await serveControl(process.stdin, process.stdout, (r) => transport.handle(r));
transport.close();
process.exit(0);
