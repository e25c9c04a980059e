import { existsSync } from "node:fs";
import { join } from "node:path";
import { decodeEntries, encodeEntries, mapNames, maps } from "@weft/codec";
import { afterAll, describe, expect, it } from "vitest";
import { BpfObject, closeFd, openPinnedMap } from "../../nodeagent/src/kernel/index.ts";
import { skipWithout } from "../support/prerequisites.ts";
import { Cleanup, kernelUnavailableReason, makePinDir, objectPath } from "../support/kernel.ts";
import { mapOf } from "./policy-harness.ts";

const reason = kernelUnavailableReason();

describe.skipIf(skipWithout("kernel (root, bpf, bpffs)", reason))("pinned maps survive a reload", () => {
  const cleanup = new Cleanup();
  afterAll(() => cleanup.run());

  it("pins the maps an object uses, and a second load reuses them with their entries", () => {
    const dir = makePinDir(cleanup, "pin");
    const options = { pinDir: dir, pinnedMaps: Object.values(mapNames) };
    const first = BpfObject.load(objectPath("weft_policy"), options);
    cleanup.add("close first object", () => first.close());
    // weft_policy uses these four; the LB maps belong to weft_sock and are not created here.
    for (const id of ["ipcache", "endpoint", "policy", "metrics"] as const) expect(existsSync(join(dir, mapNames[id]))).toBe(true);
    expect(existsSync(join(dir, mapNames.svc))).toBe(false);

    const entry = { key: { prefix: "198.18.4.0/22" }, value: { identity: 4242, tenant: 3 } };
    const { keys, values } = encodeEntries("ipcache", [entry]);
    mapOf(first, maps.ipcache).updateBatch(keys, values);
    first.close(); // the agent restarts

    const second = BpfObject.load(objectPath("weft_policy"), options);
    cleanup.add("close second object", () => second.close());
    const dump = mapOf(second, maps.ipcache).dump();
    expect(decodeEntries("ipcache", dump.keys, dump.values)).toEqual([entry]);

    const pinned = openPinnedMap(join(dir, mapNames.ipcache), { name: mapNames.ipcache, keySize: maps.ipcache.keySize, valueSize: maps.ipcache.valueSize });
    cleanup.add("close pinned fd", () => closeFd(pinned.fd));
    expect(pinned.lookup(keys)).toEqual(values);
    expect(pinned.delete(keys)).toBe(true);
    expect(pinned.lookup(keys)).toBeNull();
    expect(mapOf(second, maps.ipcache).keys().length).toBe(0);
  });

  it("fails with the verb, the object and the errno text", () => {
    expect(() => BpfObject.load("/nonexistent/weft.o")).toThrow(/^failed to open BPF object \/nonexistent\/weft\.o: ENOENT: no such file or directory$/);
  });
});
