// Entry of a signing-pool worker thread when the API runs from its
// TypeScript source (npm start, tests, benches): Node 20 does not carry the
// parent's --import loader into workers, so load tsx here, then the worker.
import { tsImport } from "tsx/esm/api";

await tsImport("./signing-worker.ts", import.meta.url);
