import { describe, expect, it } from "vitest";
import { assignedNames, codeOf, readmeSteps } from "./readme-steps.ts";

const fence = "```";

describe("reading the newcomer's steps from README.md", () => {
  const readme = [
    "# Title", //                                            1
    "",
    "```sh", //                                              3  not marked: never run
    "rm -rf /",
    "```",
    "<!-- newcomer-test: run, except `npm test` (the suite itself) -->", // 6
    "```sh",
    "npm ci && npm start     # the API",
    "npm test                # the tests",
    "```",
    "text",
    "<!-- newcomer-test: run -->", //                       12
    "",
    "```sh",
    "# a comment line is no step",
    "npm start &   # note the token",
    'TOKEN=$(curl -s -X POST x -H "a: b" \\', //            17
    "     -d '{\"n\":\"#1\"}' | jq -r .token)",
    "cat > f <<EOF", //                                     19
    "a line # not a comment",
    "EOF",
    "export A=$PWD/x B=weft_op_...",
    "```",
  ].join("\n");

  it("runs only marked blocks, in order, one step per command, without the excepted lines", () => {
    const steps = readmeSteps(readme);
    expect(steps.map((s) => [s.line, s.code])).toEqual([
      [8, "npm ci && npm start"],
      [16, "npm start &"],
      [17, `TOKEN=$(curl -s -X POST x -H "a: b" -d '{"n":"#1"}' | jq -r .token)`],
      [19, "cat > f <<EOF"],
      [22, "export A=$PWD/x B=weft_op_..."],
    ]);
  });

  it("keeps continuations and here-documents whole in what the shell runs", () => {
    const steps = readmeSteps(readme);
    expect(steps[2]!.script).toBe('TOKEN=$(curl -s -X POST x -H "a: b" \\\n     -d \'{"n":"#1"}\' | jq -r .token)');
    expect(steps[3]!.script).toBe("cat > f <<EOF\na line # not a comment\nEOF");
  });

  it("knows which steps leave something running and which variables each must set", () => {
    const steps = readmeSteps(readme);
    expect(steps.map((s) => s.background)).toEqual([false, true, false, false, false]);
    expect(steps.map((s) => s.assigns)).toEqual([[], [], ["TOKEN"], [], ["A", "B"]]);
    expect(assignedNames("A=1 cmd")).toEqual([]);
    expect(assignedNames("A=1 B='x y'")).toEqual(["A", "B"]);
    expect(assignedNames("cd x && terraform apply")).toEqual([]);
  });

  it("cuts comments only where a word starts outside quotes", () => {
    expect(codeOf("echo a#b '# c' \"# d\" # e")).toBe("echo a#b '# c' \"# d\"");
    expect(codeOf("echo \\# x")).toBe("echo \\# x");
  });

  it("refuses a marker that has drifted from its block", () => {
    expect(() => readmeSteps(`<!-- newcomer-test: run, except \`npm tset\` -->\n${fence}sh\nnpm test\n${fence}\n`)).toThrow(
      "README.md:1: the marker excepts `npm tset`, which its block does not contain",
    );
    expect(() => readmeSteps("<!-- newcomer-test: run -->\nsome prose\n")).toThrow("README.md:1: a newcomer-test marker must come just before a fenced block");
    expect(() => readmeSteps(`<!-- newcomer-test: run -->\n${fence}sh\nls\n`)).toThrow("is never closed");
    expect(() => readmeSteps(`<!-- newcomer-test: run -->\n${fence}sh\ncat <<EOF\nno end\n${fence}\n`)).toThrow("here-document EOF is never closed");
    expect(() => readmeSteps("# nothing marked\n")).toThrow("marks no block");
  });
});
