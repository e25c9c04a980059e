// Preload for the agent process (node --import): wraps fetch and prints one
// {"trace":"fetch",...} line per request on stderr, with epoch times in ms
// (t0 sent, t1 answered), so bench/agent/propagation.ts can line the
// agent's HTTP calls up with its writes (BENCH_TRACE=1). Diagnostics only.
const orig = globalThis.fetch;
const now = () => performance.timeOrigin + performance.now();
globalThis.fetch = async (url, init = {}) => {
  const t0 = now();
  try {
    const res = await orig(url, init);
    process.stderr.write(JSON.stringify({ trace: "fetch", method: init.method ?? "GET", url: String(url).replace(/^https?:\/\/[^/]+/, ""), t0, t1: now(), status: res.status }) + "\n");
    return res;
  } catch (e) {
    process.stderr.write(JSON.stringify({ trace: "fetch", method: init.method ?? "GET", url: String(url), t0, t1: now(), error: String(e) }) + "\n");
    throw e;
  }
};
