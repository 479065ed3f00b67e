// Strings a peer chose (guest names, stale reasons, a daemon's error text) printed on an
// operator's terminal: control characters would let them move the cursor, retitle the
// window or rewrite earlier lines (ESC ] 0 ; ... BEL), so each is shown as an escape instead.

// C0 controls, DEL, C1 controls (8-bit CSI/OSC on some terminals), and the bidirectional
// overrides and isolates, which reorder what follows them on the line.
// biome-ignore lint/suspicious/noControlCharactersInRegex: these are the characters meant
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(ch: string): string {
  const code = ch.charCodeAt(0);
  return NAMED[ch] ?? (code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`);
}

/** `s` with every control character written as a visible escape (`\x1b`, `\n`, `\u202e`). */
export function printable(s: unknown): string {
  return String(s).replace(UNPRINTABLE, escapeChar);
}

/** Like printable, for multi-line text (a policy): newlines and tabs stay as they are. */
export function printableText(s: unknown): string {
  return String(s).replace(UNPRINTABLE, (ch) => (ch === '\n' || ch === '\t' ? ch : escapeChar(ch)));
}
