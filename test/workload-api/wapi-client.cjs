// A SPIFFE Workload API client written from the specification
// (SPIFFE_Workload_API.md, SPIFFE_Workload_Endpoint.md) and the SPIFFE
// project's workload.proto, with @grpc/grpc-js; it shares no code with the
// agent. The tests run it as a process inside a workload's network namespace
// (or another), so the agent attests this very process.
//
//   SPIFFE_ENDPOINT_SOCKET=unix:///path node wapi-client.cjs <command> [args]
//
// Every result is one JSON line on stdout; a gRPC error is {"error": <code
// name>, "details": ...} and still exit 0.
"use strict";
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const crypto = require("node:crypto");
const tls = require("node:tls");

const [, , command, ...args] = process.argv;
const endpoint = process.env.SPIFFE_ENDPOINT_SOCKET;
if (!endpoint || !endpoint.startsWith("unix://")) throw new Error("SPIFFE_ENDPOINT_SOCKET must be a unix:// URI");
const def = protoLoader.loadSync(process.env.WORKLOAD_PROTO, { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true });
const Api = grpc.loadPackageDefinition(def).SpiffeWorkloadAPI;
// unix:///run/x.sock is what SPIFFE_ENDPOINT_SOCKET holds; grpc-js takes unix:///path as well.
const client = new Api(endpoint, grpc.credentials.createInsecure());
const header = () => {
  const md = new grpc.Metadata();
  md.set("workload.spiffe.io", "true");
  return md;
};
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const errorOf = (e) => ({ error: grpc.status[e.code] ?? String(e.code), details: e.details });
const b64 = (b) => Buffer.from(b).toString("base64");

/** DER certificates concatenated -> each one. */
function splitDer(buf) {
  const certs = [];
  let at = 0;
  while (at < buf.length) {
    if (buf[at] !== 0x30) throw new Error("not a DER SEQUENCE");
    let len = buf[at + 1];
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[at + 2 + i];
      hdr = 2 + n;
    }
    certs.push(buf.subarray(at, at + hdr + len));
    at += hdr + len;
  }
  return certs;
}
const pemOf = (der) => new crypto.X509Certificate(der).toString();

function svidMessage(m) {
  return {
    svids: m.svids.map((s) => ({ spiffe_id: s.spiffe_id, x509_svid: b64(s.x509_svid), x509_svid_key: b64(s.x509_svid_key), bundle: b64(s.bundle), hint: s.hint })),
    crl: m.crl.length,
    federated_bundles: Object.keys(m.federated_bundles),
  };
}

/** Streams `method` and prints `count` messages (then exits), or the error. */
function stream(method, count, md, map) {
  let seen = 0;
  const call = client[method]({}, md);
  call.on("data", (m) => {
    out(map(m));
    if (++seen >= count) {
      call.cancel();
      process.exit(0);
    }
  });
  call.on("error", (e) => {
    if (e.code === grpc.status.CANCELLED) return;
    out(errorOf(e));
    process.exit(0);
  });
}

/** The first X.509-SVID message: {certPem, chainPems, keyPem, bundlePem, id}. */
function fetchSvid() {
  return new Promise((resolve, reject) => {
    const call = client.FetchX509SVID({}, header());
    call.once("data", (m) => {
      call.cancel();
      const s = m.svids[0];
      const chain = splitDer(Buffer.from(s.x509_svid));
      resolve({
        id: s.spiffe_id,
        cert: chain.map(pemOf).join(""),
        key: crypto.createPrivateKey({ key: Buffer.from(s.x509_svid_key), format: "der", type: "pkcs8" }).export({ type: "pkcs8", format: "pem" }),
        ca: splitDer(Buffer.from(s.bundle)).map(pemOf).join(""),
      });
    });
    call.on("error", (e) => e.code !== grpc.status.CANCELLED && reject(e));
  });
}
const uriOf = (cert) => (cert && cert.subjectaltname ? cert.subjectaltname.split(", ").find((n) => n.startsWith("URI:"))?.slice(4) : undefined);

const commands = {
  x509: () => stream("FetchX509SVID", Number(args[0] ?? 1), header(), svidMessage),
  "x509-noheader": () => stream("FetchX509SVID", 1, new grpc.Metadata(), svidMessage),
  "x509-badheader": () => {
    const md = new grpc.Metadata();
    md.set("workload.spiffe.io", "True");
    stream("FetchX509SVID", 1, md, svidMessage);
  },
  /** Every X.509-SVID message until killed, as {at (ms since the epoch, sub-ms), serial, notBefore, notAfter, cas}: for bench:workload-api. */
  watch: () =>
    stream("FetchX509SVID", Number.POSITIVE_INFINITY, header(), (m) => {
      const leaf = new crypto.X509Certificate(splitDer(Buffer.from(m.svids[0].x509_svid))[0]);
      return { at: performance.timeOrigin + performance.now(), serial: leaf.serialNumber, notBefore: Date.parse(leaf.validFrom), notAfter: Date.parse(leaf.validTo), cas: splitDer(Buffer.from(m.svids[0].bundle)).length };
    }),
  x509bundles: () => stream("FetchX509Bundles", Number(args[0] ?? 1), header(), (m) => ({ bundles: Object.fromEntries(Object.entries(m.bundles).map(([k, v]) => [k, b64(v)])) })),
  jwtbundles: () => stream("FetchJWTBundles", Number(args[0] ?? 1), header(), (m) => ({ bundles: Object.fromEntries(Object.entries(m.bundles).map(([k, v]) => [k, JSON.parse(Buffer.from(v).toString())])) })),
  wit: () => stream("FetchWITSVID", 1, header(), (m) => m),
  "wit-bundles": () => stream("FetchWITBundles", 1, header(), (m) => m),
  jwt: () =>
    client.FetchJWTSVID({ audience: args[0] ? args[0].split(",") : [], spiffe_id: args[1] ?? "" }, header(), (e, r) => {
      out(e ? errorOf(e) : { svids: r.svids });
      process.exit(0);
    }),
  "jwt-noheader": () =>
    client.FetchJWTSVID({ audience: ["x"] }, new grpc.Metadata(), (e, r) => {
      out(e ? errorOf(e) : { svids: r.svids });
      process.exit(0);
    }),
  validate: () =>
    client.ValidateJWTSVID({ audience: args[0], svid: args[1] }, header(), (e, r) => {
      out(e ? errorOf(e) : { spiffe_id: r.spiffe_id, claims: r.claims });
      process.exit(0);
    }),
  /** mTLS server with this workload's SVID: asks for and verifies a client certificate against the bundle. */
  "tls-server": async () => {
    const svid = await fetchSvid();
    const server = tls.createServer({ cert: svid.cert, key: svid.key, ca: svid.ca, requestCert: true, rejectUnauthorized: true, minVersion: "TLSv1.3" }, (s) => {
      out({ accepted: uriOf(s.getPeerCertificate()) });
      s.end(`hello from ${svid.id}`);
    });
    server.on("tlsClientError", (e) => out({ refused: e.code ?? e.message }));
    // A TCP port, or a Unix socket path (which reaches across namespaces without the datapath).
    if (args[0].startsWith("/")) server.listen(args[0], () => out({ ready: svid.id }));
    else server.listen(Number(args[0]), "0.0.0.0", () => out({ ready: svid.id }));
  },
  /** mTLS client with this workload's SVID; the server must present an SVID of the expected SPIFFE ID. */
  "tls-client": async () => {
    const svid = await fetchSvid();
    const [host, port, expect] = args;
    const s = tls.connect({
      ...(host.startsWith("/") ? { path: host } : { host, port: Number(port) }),
      cert: svid.cert,
      key: svid.key,
      ca: svid.ca,
      minVersion: "TLSv1.3",
      // SPIFFE authenticates the SPIFFE ID, not a host name.
      checkServerIdentity: (_h, cert) => (uriOf(cert) === expect ? undefined : new Error(`server is ${uriOf(cert)}, not ${expect}`)),
    });
    let data = "";
    s.on("data", (d) => (data += d));
    s.on("end", () => {
      out({ ok: true, server: uriOf(s.getPeerCertificate()), data });
      process.exit(0);
    });
    s.on("error", (e) => {
      out({ ok: false, error: e.code ?? e.message });
      process.exit(0);
    });
  },
};
const run = commands[command];
if (!run) throw new Error(`unknown command ${command}`);
Promise.resolve(run()).catch((e) => {
  out(e && typeof e.code === "number" ? errorOf(e) : { error: String(e && e.message) });
  process.exit(0);
});
if (command !== "watch") {
  setTimeout(() => {
    out({ error: "TIMEOUT" });
    process.exit(0);
  }, Number(process.env.CLIENT_TIMEOUT_MS ?? 20000)).unref();
}
