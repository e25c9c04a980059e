/**
 * A Server-Sent Events decoder (the WHATWG EventSource parsing rules):
 * fields per line, an event per blank line, `:` comments (heartbeats)
 * skipped, CR, LF and CRLF line ends, chunks split anywhere.
 */
export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

export class SseDecoder {
  private buffer = "";
  private event = "";
  private data: string[] = [];
  private id: string | undefined;
  /** Set by any line, comments included: the stream is alive. */
  sawLine = false;

  /** The events completed by this chunk. */
  push(chunk: string): SseEvent[] {
    this.buffer += chunk;
    const out: SseEvent[] = [];
    for (;;) {
      const m = /\r\n|\r|\n/.exec(this.buffer);
      if (!m) break;
      // A lone CR at the very end may be the first half of CRLF: wait for more.
      if (m[0] === "\r" && m.index === this.buffer.length - 1) break;
      const line = this.buffer.slice(0, m.index);
      this.buffer = this.buffer.slice(m.index + m[0].length);
      this.sawLine = true;
      const done = this.line(line);
      if (done) out.push(done);
    }
    return out;
  }

  private line(line: string): SseEvent | null {
    if (line === "") {
      if (this.data.length === 0) {
        this.event = "";
        return null;
      }
      const e: SseEvent = { event: this.event || "message", data: this.data.join("\n"), ...(this.id === undefined ? {} : { id: this.id }) };
      this.event = "";
      this.data = [];
      return e;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.event = value;
    else if (field === "data") this.data.push(value);
    else if (field === "id" && !value.includes("\0")) this.id = value;
    return null;
  }
}
