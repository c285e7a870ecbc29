// Detecting key material in log text (issue 5 item 8): every encoding a careless log line could give a key,
// as windows long enough that a match by chance is out of the question, short enough to catch a partial key.

const hex = (k: Uint8Array): string => Buffer.from(k).toString('hex');

/** Every n-character window of s (n <= s.length). */
const windows = (s: string, n: number): string[] => Array.from({ length: s.length - n + 1 }, (_, i) => s.slice(i, i + n));
const windows8 = (b: number[]): number[][] => Array.from({ length: b.length - 7 }, (_, i) => b.slice(i, i + 8));

/**
 * What a leak of key k could look like in a log: any 12 characters of its base64 or base64url (at each of
 * the three alignments it could have inside a longer buffer), any 16 hex digits in either case, 8 bytes as
 * Buffer/Uint8Array inspection prints them (hex pairs, decimal lists), or 8 raw bytes.
 */
export function leakNeedles(k: Uint8Array): { encoding: string; needle: string }[] {
  const out: { encoding: string; needle: string }[] = [];
  const add = (encoding: string, needles: string[]) => needles.forEach((needle) => out.push({ encoding, needle }));
  for (let shift = 0; shift < 3; shift++) {
    const padded = Buffer.concat([Buffer.alloc(shift), Buffer.from(k), Buffer.alloc(2)]);
    for (const enc of ['base64', 'base64url'] as const) {
      // Drop the characters that also encode the padding around the key.
      const s = padded.toString(enc).slice(4, -4);
      add(`${enc}+${shift}`, windows(s, 12));
    }
  }
  add('hex', windows(hex(k), 16));
  add('HEX', windows(hex(k).toUpperCase(), 16));
  const bytes = [...k];
  const eight = (sep: string, f: (b: number) => string) => windows8(bytes).map((w) => w.map(f).join(sep));
  add('hex bytes', eight(' ', (b) => b.toString(16).padStart(2, '0')));
  add('decimal', eight(', ', String));
  add('decimal', eight(',', String));
  add('raw', eight('', (b) => String.fromCharCode(b)));
  return out;
}

/** The encodings under which any of the named secrets appears in text (read as latin1). */
export function findLeaks(secrets: Record<string, Uint8Array>, text: string): string[] {
  const found: string[] = [];
  for (const [name, k] of Object.entries(secrets)) {
    for (const { encoding, needle } of leakNeedles(k)) {
      const at = text.indexOf(needle);
      if (at >= 0) {
        const end = text.indexOf('\n', at);
        const line = text.slice(text.lastIndexOf('\n', at) + 1, end < 0 ? undefined : end);
        found.push(`${name} as ${encoding} in: ${JSON.stringify(line.slice(0, 160))}`);
        break;
      }
    }
  }
  return found;
}

