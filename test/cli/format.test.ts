// The weft command's pure parts: the flow line, SSE decoding, the field
// diff, documents, tables and problem lines.
import { describe, expect, it } from "vitest";
import { diff, formatChange } from "../../cli/src/diff.ts";
import { readDocuments } from "../../cli/src/documents.ts";
import { endpoint, flowTime, formatFlow, type Flow } from "../../cli/src/flow-format.ts";
import { findKind } from "../../cli/src/kinds.ts";
import { table } from "../../cli/src/output.ts";
import { apiError, indexed, specField } from "../../cli/src/problem.ts";
import { SseDecoder } from "../../cli/src/sse.ts";
import { fillPath, ROUTES } from "../../cli/src/routes.ts";

const dropped: Flow = {
  id: "f1",
  time: "2026-12-06T16:20:01.123Z",
  node: "node-a",
  hook: "ingress",
  verdict: "dropped",
  reason: "policy-deny",
  protocol: "tcp",
  source: { address: "198.18.1.2", port: 40000, identity: "web", tenant: "acme" },
  destination: { address: "198.18.2.3", port: 5432, identity: "db", tenant: "acme" },
  policy: { name: "db-ingress", rule: 0, direction: "ingress", mode: "enforce" },
};

describe("a flow as one line", () => {
  it("reads as hubble observe's compact line", () => {
    expect(formatFlow({ ...dropped, policy: { name: "db-ingress", rule: 0 } }, { timeZone: "UTC" })).toBe(
      "Dec  6 16:20:01.123  node-a  acme/web 198.18.1.2:40000 -> acme/db 198.18.2.3:5432 tcp  DROPPED (policy-deny, policy db-ingress rule 0)",
    );
  });

  it("prints the time in the zone it is given, with milliseconds and a padded day", () => {
    expect(flowTime("2026-12-06T23:59:59.007Z", "UTC")).toBe("Dec  6 23:59:59.007");
    expect(flowTime("2026-12-06T23:59:59.007Z", "Asia/Tokyo")).toBe("Dec  7 08:59:59.007");
    expect(flowTime("2026-01-15T00:00:00.000Z", "America/New_York")).toBe("Jan 14 19:00:00.000");
    expect(flowTime("not a time")).toBe("not a time");
  });

  it("names reserved and unknown endpoints, ports only when there are any", () => {
    expect(endpoint({ address: "8.8.8.8", port: 53, identity: null, tenant: null, reserved: "world" })).toBe("reserved:world 8.8.8.8:53");
    expect(endpoint({ address: "198.18.0.9", port: 0, identity: null, tenant: null })).toBe("198.18.0.9");
    expect(endpoint({ address: "fd00::1", port: 80, identity: "api", tenant: null })).toBe("api [fd00::1]:80");
  });

  it("shows what is not a flow as it came, rather than failing or dropping it", () => {
    expect(formatFlow({ id: "x", node: "n" } as unknown as Flow)).toBe('(not a flow) {"id":"x","node":"n"}');
    expect(formatFlow({ ...dropped, source: null } as unknown as Flow)).toMatch(/^\(not a flow\) /);
  });

  it("shows a translation, an audit (would deny), a forwarded flow and a numeric protocol", () => {
    const translated: Flow = {
      ...dropped,
      verdict: "translated",
      reason: null,
      policy: null,
      hook: "sock",
      originalDestination: { address: "198.18.128.10", port: 5432, service: "db" },
    };
    expect(formatFlow(translated, { timeZone: "UTC" })).toBe(
      "Dec  6 16:20:01.123  node-a  acme/web 198.18.1.2:40000 -> acme/db 198.18.2.3:5432 [service db via 198.18.128.10:5432] tcp  TRANSLATED",
    );
    expect(formatFlow({ ...dropped, verdict: "audit", reason: "policy-deny" }, { timeZone: "UTC" })).toMatch(
      / AUDIT \(would deny: policy-deny, policy db-ingress rule 0 ingress\)$/,
    );
    expect(formatFlow({ ...dropped, verdict: "forwarded", reason: null, protocol: "47" }, { timeZone: "UTC" })).toMatch(
      / proto 47  FORWARDED \(policy db-ingress rule 0 ingress\)$/,
    );
  });
});

describe("Server-Sent Events", () => {
  it("decodes events split anywhere, skips heartbeat comments, joins data lines", () => {
    const stream = ": hi\r\n\r\nevent: flow\r\ndata: {\"a\":1}\r\n\r\nevent: flow\ndata: line1\ndata: line2\nid: 7\n\n:keep-alive\n\ndata: plain\n\n";
    for (const size of [1, 2, 3, 7, stream.length]) {
      const d = new SseDecoder();
      const events = [];
      for (let i = 0; i < stream.length; i += size) events.push(...d.push(stream.slice(i, i + size)));
      expect(events, `chunks of ${size}`).toEqual([
        { event: "flow", data: '{"a":1}' },
        { event: "flow", data: "line1\nline2", id: "7" },
        // The last event id carries over, as EventSource's lastEventId does.
        { event: "message", data: "plain", id: "7" },
      ]);
    }
  });

  it("holds an event back until its blank line arrives", () => {
    const d = new SseDecoder();
    expect(d.push("event: flow\ndata: x\n")).toEqual([]);
    expect(d.push("\n")).toEqual([{ event: "flow", data: "x" }]);
  });
});

describe("paths", () => {
  it("keeps every name inside its own segment: no dot segments, slashes or queries escape it", () => {
    const route = ROUTES.services.delete;
    expect(fillPath(route, { tenant: "acme", name: "a/../b?x=1#f" })).toBe("/v1/tenants/acme/services/a%2F..%2Fb%3Fx%3D1%23f");
    for (const name of ["..", ".", "", "%2e%2E", ".%2e"]) {
      expect(() => fillPath(route, { tenant: "acme", name }), name).toThrow(/is not a name/);
    }
    expect(() => fillPath(route, { tenant: "..", name: "db" })).toThrow(/is not a tenant/);
  });
});

describe("the field diff", () => {
  it("names each added, removed and changed leaf by its path", () => {
    const before = { name: "db", etag: '"1"', ports: [{ port: 80, protocol: "tcp" }], labels: { a: "1", "x.y": "2" }, vip: "198.18.128.1" };
    const after = { name: "db", etag: '"2"', ports: [{ port: 81, protocol: "tcp" }, { port: 443, protocol: "tcp" }], labels: { a: "1" }, vip: "198.18.128.1" };
    expect(diff(before, after, ["etag"]).map(formatChange)).toEqual([
      "~ ports[0].port: 80 -> 81",
      "+ ports[1].port: 443",
      '+ ports[1].protocol: "tcp"',
      '- labels["x.y"]: "2"',
    ]);
  });

  it("finds nothing between equal values, and treats a type change as one change", () => {
    expect(diff({ a: [1, { b: null }] }, { a: [1, { b: null }] })).toEqual([]);
    expect(diff({ egress: null }, { egress: [] }).map(formatChange)).toEqual(["~ egress: null -> []"]);
    expect(diff({ s: { x: 1 } }, { s: "x" }).map(formatChange)).toEqual(['~ s: {"x":1} -> "x"']);
  });
});

describe("documents", () => {
  const read = (text: string, opts: { tenantFlag?: string; defaultTenant?: string } = {}) => readDocuments(text, "f.yaml", { needs: "put", ...opts });

  it("reads --- separated YAML, a JSON array and a JSON object, in order", () => {
    const yaml = "kind: Tenant\nmetadata: {name: acme}\nspec: {}\n---\n---\nkind: services\nmetadata:\n  name: db\n  tenant: acme\nspec:\n  ports: []\n";
    expect(read(yaml).map((d) => [d.kind.plural, d.tenant, d.name, d.where])).toEqual([
      ["tenants", "acme", "acme", "f.yaml, document 1 (line 1)"],
      ["services", "acme", "db", "f.yaml, document 2 (line 6)"],
    ]);
    const json = JSON.stringify([
      { kind: "Identity", metadata: { name: "web" }, spec: { path: "/web" } },
      { kind: "policy", metadata: { name: "p" }, spec: {} },
    ]);
    expect(read(json, { defaultTenant: "acme" }).map((d) => [d.kind.kind, d.tenant, d.spec])).toEqual([
      ["Identity", "acme", { path: "/web" }],
      ["Policy", "acme", {}],
    ]);
    expect(read('{"kind":"Workload","metadata":{"name":"w"},"spec":{"node":"n"}}', { tenantFlag: "t1" })[0]!.tenant).toBe("t1");
  });

  it("refuses what it cannot place, naming the document and its line", () => {
    const bad = (text: string, opts = {}) => () => read(text, opts);
    expect(bad("kind: Tenant\nmetadata: {name: a}\n---\nkind: Servce\nmetadata: {name: x, tenant: a}\n")).toThrow(
      /f\.yaml, document 2 \(line 4\): unknown kind "Servce"/,
    );
    expect(bad("kind: nodes\nmetadata: {name: n}\n")).toThrow(/nodes cannot be applied/);
    expect(bad("kind: Service\nmetadata: {name: x}\n")).toThrow(/no tenant: set metadata.tenant/);
    expect(bad("kind: Service\nmetadata: {name: x, tenant: a}\n", { tenantFlag: "b" })).toThrow(/metadata.tenant is "a" but --tenant is "b"/);
    expect(bad("kind: Tenant\nmetadata: {name: a, tenant: a}\n")).toThrow(/belongs to no tenant/);
    expect(bad("kind: Service\nmetadata: {name: x, tenant: a}\nspecs: {}\n")).toThrow(/unknown top-level field "specs"/);
    expect(bad("kind: Service\nmetadata: {name: x, tenant: a, namespace: b}\n")).toThrow(/unknown metadata field "namespace"/);
    expect(bad("kind: Service\nmetadata: {name: x, tenant: a}\nspec: [1]\n")).toThrow(/spec must be an object/);
    expect(bad("kind: Service\nmetadata: {name: x, name: y}\n")).toThrow(/not valid YAML or JSON/);
    expect(bad("- 1\n- 2\n")).toThrow(/document 1 \(line 1\): a document must be an object/);
    expect(bad("just a string\n")).toThrow(/a document must be an object/);
  });

  it("deletes from a file only kinds that have a DELETE by name", () => {
    expect(() => readDocuments("kind: audit\nmetadata: {name: x, tenant: a}\n", "f", { needs: "delete" })).toThrow(/unknown kind|cannot be deleted/);
  });
});

describe("what others wrote never reaches the terminal as control characters", () => {
  const ESC = "\u001b";
  it("shows escapes in table cells, flow lines and diff lines as \\xNN", () => {
    const hostile = `${ESC}[2J${ESC}]0;owned\u0007\u009b31m`;
    const out = table([{ header: "ERRORS", value: () => hostile }], [{}]);
    expect(out).toBe("ERRORS\n\\x1b[2J\\x1b]0;owned\\x07\\x9b31m\n");
    const line = formatFlow({ ...dropped, node: `n${ESC}[8m`, reason: `deny${ESC}[0m` }, { timeZone: "UTC" });
    expect(line).not.toMatch(/[\u0000-\u001f\u007f-\u009f]/);
    expect(line).toContain("n\\x1b[8m");
    expect(diff({ a: "x" }, { a: `\u009b2J` }).map(formatChange)).toEqual(['~ a: "x" -> "\\x9b2J"']);
  });
});

describe("tables and problems", () => {
  it("aligns one row per item under the kind's headers", () => {
    const kind = findKind("workload")!;
    const out = table(kind.columns.slice(0, 4), [
      { name: "web-1", identity: "web", node: "node-a", addresses: ["198.19.0.2"] },
      { name: "db", identity: "database", node: "n", addresses: [] },
    ]);
    expect(out).toBe(
      ["NAME    IDENTITY   NODE     ADDRESSES", "web-1   web        node-a   198.19.0.2", "db      database   n        -", ""].join("\n"),
    );
  });

  it("knows httpRoutes by any of their names, and shows each route's parents as service:port", () => {
    const kind = findKind("httpRoutes")!;
    for (const name of ["httproutes", "httpRoute", "HttpRoute", "HTTPRoute"]) expect(findKind(name), name).toBe(kind);
    const out = table(kind.columns.slice(0, 3), [{ name: "shop", parentRefs: [{ name: "web", port: 80 }, { name: "api" }], rules: [{}, {}] }]);
    expect(out).toBe(["NAME   PARENTS      RULES", "shop   web:80,api   2", ""].join("\n"));
  });

  it("knows trafficPolicies by any of their names, and shows each policy's service and the limits it sets", () => {
    const kind = findKind("trafficPolicies")!;
    for (const name of ["trafficpolicies", "trafficPolicy", "TrafficPolicy", "TRAFFICPOLICY"]) expect(findKind(name), name).toBe(kind);
    const out = table(kind.columns.slice(0, 3), [
      { name: "web", targetRef: { name: "web" }, connectionPool: { maxConnections: 100, maxPendingRequests: 0 }, outlierDetection: {}, rateLimit: { requestsPerSecond: 20, burst: 40 } },
      { name: "bare", targetRef: { kind: "Service", name: "api" } },
    ]);
    expect(out).toBe(["NAME   SERVICE   LIMITS", "web    web       conn=100,pending=0,eject=5x5xx,rate=20/s", "bare   api       -", ""].join("\n"));
  });

  it("prints the title, the detail and each field error; apply names fields by the document", () => {
    const body = JSON.stringify({
      type: "urn:weft:problem:validation",
      title: "Bad Request",
      status: 400,
      detail: "invalid request: body.ports.0.port",
      requestId: "r-1",
      errors: [{ field: "body.ports.0.port", message: "must be <= 65535" }],
    });
    const e = apiError(400, body, "application/problem+json", specField);
    expect(e.message).toBe("Bad Request (400): invalid request: body.ports.0.port");
    expect(e.details).toEqual(["spec.ports[0].port: must be <= 65535", "request id: r-1"]);
    expect(apiError(502, "<html>bad gateway</html>", "text/html").message).toBe("HTTP 502: <html>bad gateway</html>");
    expect(indexed("query.limit")).toBe("query.limit");
    expect(specField("body")).toBe("spec");
    expect(specField("body.backends.explicit.12.weight")).toBe("spec.backends.explicit[12].weight");
  });
});
