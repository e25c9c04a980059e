/**
 * Text from the API made safe for a terminal. Names are DNS labels, but
 * some strings are written by others: a node's agent reports its errors and
 * unresolved reasons, a tenant its labels. An escape sequence among them
 * could rewrite an operator's screen (hide a line, fake a prompt), so the
 * human-readable outputs show control characters as \xNN instead. JSON and
 * YAML outputs are data and stay exact.
 */
// C0 controls, DEL and the C1 controls (U+0080-U+009F: some terminals obey an 8-bit CSI).
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

export const printable = (text: string): string =>
  text.replace(CONTROL, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);

/** The same, line by line: newlines stay, every other control character is shown. */
export const printableLines = (text: string): string => text.split("\n").map(printable).join("\n");
