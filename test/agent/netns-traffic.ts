/**
 * Real TCP between workload namespaces for the agent's end-to-end test:
 * echo servers inside a namespace, and a client that runs inside a test
 * cgroup (so the socket-LB programs see its connect()) and a namespace.
 * Workload namespaces get a route to 198.18.0.0/15 only, never a default
 * route, and only the test's own host-side veths forward.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import type { Cleanup } from "../support/kernel.ts";

/** Routes 198.18.0.0/15 from the namespace through its host-side veth, and lets that veth forward (this interface only). */
export function routeWorkload(ns: string, hostIf: string, hostAddress: string): void {
  execFileSync("ip", ["-n", ns, "route", "add", "198.18.0.0/15", "via", hostAddress]);
  // Per-interface: IPv4 forwards a packet when its input device has forwarding on; the host's global setting is untouched.
  execFileSync("sysctl", ["-q", "-w", `net.ipv4.conf.${hostIf}.forwarding=1`]);
}

/** A TCP server in `ns` on 0.0.0.0:port answering `name` to every connection and closing; stopped on cleanup. */
export function echoServer(cleanup: Cleanup, ns: string, name: string, port: number): Promise<void> {
  return serverInNetns(cleanup, ns, `echo server ${name}`, port, `(s)=>{s.on("error",()=>{});s.end(${JSON.stringify(name)})}`);
}

/** A TCP echo server in `ns` on 0.0.0.0:port that keeps connections open; stopped on cleanup. */
export function persistentEchoServer(cleanup: Cleanup, ns: string, port: number): Promise<void> {
  return serverInNetns(cleanup, ns, `persistent echo server on ${port}`, port, `(s)=>{s.on("error",()=>{});s.pipe(s)}`);
}

/** Runs node's net.createServer(onConnection) in `ns` and resolves once it listens. */
async function serverInNetns(cleanup: Cleanup, ns: string, what: string, port: number, onConnection: string): Promise<void> {
  const script = `require("node:net").createServer(${onConnection}).listen(${port},"0.0.0.0",()=>console.log("ready"))`;
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  cleanup.add(`stop ${what}`, () => void (child.exitCode === null && child.kill("SIGKILL")));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`failed to start ${what}: not listening after 10 s`)), 10_000);
    child.stdout!.on("data", (d: Buffer) => String(d).includes("ready") && (clearTimeout(timer), resolve()));
    child.once("exit", (code) => reject(new Error(`failed to start ${what}: exited with ${code}`)));
  });
}

/**
 * `count` sequential TCP connections from inside `ns` (and `cgroup`) to
 * host:port; answers how many got each reply, "timeout" (dropped) or
 * "error:<code>".
 */
export function tcpProbe(ns: string, cgroup: string, host: string, port: number, count: number, timeoutMs = 600): Promise<Record<string, number>> {
  const script = `
const net=require("node:net");const out={};const add=(k)=>out[k]=(out[k]||0)+1;
function one(){return new Promise((res)=>{let data="";const s=net.connect(${port},${JSON.stringify(host)});
const t=setTimeout(()=>{s.destroy();res("timeout")},${timeoutMs});
s.on("data",(d)=>data+=d);s.on("end",()=>{clearTimeout(t);res(data||"empty")});s.on("error",(e)=>{clearTimeout(t);res("error:"+e.code)});});}
(async()=>{for(let i=0;i<${count};i++)add(await one());console.log(JSON.stringify(out));})();`;
  return new Promise((resolve, reject) =>
    execFile(
      "sh",
      ["-c", 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$1" "$2" -e "$3"', cgroup, ns, process.execPath, script],
      { timeout: 20_000 + count * (timeoutMs + 100) },
      (err, stdout, stderr) => (err ? reject(new Error(`failed to probe ${host}:${port} from ${ns}: ${stderr || err.message}`)) : resolve(JSON.parse(stdout) as Record<string, number>)),
    ),
  );
}

export interface HeldConnection {
  /** Stops the client; resolves with the echoes it got and whether the connection ever broke. */
  stop(): Promise<{ echoes: number; broken: string | null }>;
}

/**
 * One TCP connection from `ns` to host:port held open, a ping every 50 ms,
 * each answered by the echo server; any error, close or a ping unanswered
 * for 2 s marks it broken.
 */
export async function holdConnection(cleanup: Cleanup, ns: string, host: string, port: number): Promise<HeldConnection> {
  const script = `
let echoes=0,broken=null,last=Date.now();const s=require("node:net").connect(${port},${JSON.stringify(host)},()=>console.log("connected"));
s.on("data",(d)=>{echoes+=String(d).length;last=Date.now()});
s.on("error",(e)=>broken=broken||("error "+e.code));s.on("close",()=>broken=broken||"closed");
setInterval(()=>{if(!broken){s.write("p");if(Date.now()-last>2000)broken="no echo for 2 s"}},50);
process.on("SIGTERM",()=>{console.log(JSON.stringify({echoes,broken}));process.exit(0)});`;
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "pipe"] });
  cleanup.add("stop the held connection", () => void (child.exitCode === null && child.kill("SIGKILL")));
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += String(d)));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`failed to connect to ${host}:${port} from ${ns}`)), 5_000);
    child.stdout!.on("data", () => out.includes("connected") && (clearTimeout(timer), resolve()));
  });
  return {
    stop: () =>
      new Promise((resolve, reject) => {
        child.once("exit", () => {
          const line = out.trim().split("\n").at(-1) ?? "";
          try {
            resolve(JSON.parse(line) as { echoes: number; broken: string | null });
          } catch {
            reject(new Error(`held connection client said ${JSON.stringify(out)}`));
          }
        });
        child.kill("SIGTERM");
      }),
  };
}
