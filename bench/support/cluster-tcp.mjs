// Real TCP for the simulated cluster (bench/support/cluster.ts), run inside a
// workload's network namespace and its node's cgroup. Plain Node, no tsx.
//
//   node cluster-tcp.mjs serve NAME PORT
//     listens on 0.0.0.0:PORT; answers every connection with one JSON line
//     {"server":NAME,"peer":<the address the connection came from>} and closes
//     it; prints "listening" once ready.
//   node cluster-tcp.mjs probe HOST PORT COUNT [CONCURRENCY] [TIMEOUT_MS]
//     COUNT new connections to HOST:PORT, CONCURRENCY at a time (default 1),
//     each given TIMEOUT_MS (default 1000) to be answered; prints one JSON
//     line: {"servers":{NAME:n},"peers":{ADDRESS:n},"failures":{"timeout"|"error:<code>":n},"ms":elapsed}.
//     A dropped SYN is a "timeout", a refused one "error:ECONNREFUSED".
import net from "node:net";

const [mode, ...args] = process.argv.slice(2);

if (mode === "serve") {
  const [name, port] = args;
  const server = net.createServer((socket) => {
    socket.on("error", () => {});
    socket.end(`${JSON.stringify({ server: name, peer: socket.remoteAddress?.replace(/^::ffff:/, "") })}\n`);
  });
  server.listen(Number(port), "0.0.0.0", () => console.log("listening"));
} else if (mode === "probe") {
  const [host, port, count, concurrency = "1", timeoutMs = "1000"] = args;
  const out = { servers: {}, peers: {}, failures: {}, ms: 0 };
  const add = (table, key) => (table[key] = (table[key] ?? 0) + 1);
  const one = () =>
    new Promise((resolve) => {
      let data = "";
      const socket = net.connect(Number(port), host);
      const timer = setTimeout(() => {
        socket.destroy();
        resolve({ failure: "timeout" });
      }, Number(timeoutMs));
      socket.on("data", (d) => (data += d));
      socket.on("end", () => {
        clearTimeout(timer);
        try {
          resolve(JSON.parse(data));
        } catch {
          resolve({ failure: `bad answer ${JSON.stringify(data.slice(0, 80))}` });
        }
      });
      socket.on("error", (e) => {
        clearTimeout(timer);
        resolve({ failure: `error:${e.code}` });
      });
    });
  const started = performance.now();
  let left = Number(count);
  const worker = async () => {
    while (left > 0) {
      left--;
      const r = await one();
      if (r.failure) add(out.failures, r.failure);
      else {
        add(out.servers, r.server);
        add(out.peers, r.peer);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Number(concurrency)) }, worker));
  out.ms = Math.round(performance.now() - started);
  console.log(JSON.stringify(out));
} else {
  console.error("usage: cluster-tcp.mjs serve NAME PORT | probe HOST PORT COUNT [CONCURRENCY] [TIMEOUT_MS]");
  process.exit(2);
}
