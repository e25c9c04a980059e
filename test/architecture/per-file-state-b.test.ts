// One of a pair (per-file-state-a and -b): the unit project's files share one module graph, so whichever
// of the two runs second sees test support's state from the first unless test/support/per-file.ts resets it.
import { expect, test } from "vitest";
import { addressIn } from "../support/nodes.ts";

test("a test file starts with no address handed out of a block", () => {
  expect(addressIn("10.250.0.0/24")).toBe("10.250.0.2");
  expect(addressIn("10.250.0.0/24")).toBe("10.250.0.3");
});
