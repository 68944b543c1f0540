// Byte-level mutations of HTTP/1 messages, shared by the codec fuzzers (h1-downstream.fuzz.test.ts mutates
// requests, h1-upstream.fuzz.test.ts responses): a flipped byte, inserted or deleted bytes, a duplicated or added
// line, a bare LF, a truncation. Each fuzzer adds operations of its own to these (see its `Mutation` type) and
// hands these back to `mutateBytes`.
import fc from 'fast-check';

export type ByteMutation =
  | { op: 'flip'; at: number; byte: number }
  | { op: 'insert'; at: number; bytes: string }
  | { op: 'delete'; at: number; len: number }
  | { op: 'dupLine'; line: number }
  | { op: 'addLine'; line: number; text: string }
  | { op: 'bareLF'; line: number }
  | { op: 'truncate'; at: number };

/** What each fuzzer chooses from: the short byte strings `insert` puts in, the lines `addLine` adds. */
export interface ByteMutationChoices {
  insertBytes: readonly string[];
  lines: readonly string[];
}

/**
 * The arbitraries of the shared operations, in the order `fc.oneof` takes them: spread them first into the
 * fuzzer's own `fc.oneof` (the order and shape of the alternatives decide what a seed generates).
 */
export function byteMutationArbs(choices: ByteMutationChoices): fc.Arbitrary<ByteMutation>[] {
  return [
    fc.record({ op: fc.constant('flip' as const), at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }) }),
    fc.record({
      op: fc.constant('insert' as const),
      at: fc.nat(),
      bytes: fc.oneof(fc.constantFrom(...choices.insertBytes), fc.string({ minLength: 1, maxLength: 4 })),
    }),
    fc.record({ op: fc.constant('delete' as const), at: fc.nat(), len: fc.integer({ min: 1, max: 6 }) }),
    fc.record({ op: fc.constant('dupLine' as const), line: fc.nat() }),
    fc.record({ op: fc.constant('addLine' as const), line: fc.nat(), text: fc.constantFrom(...choices.lines) }),
    fc.record({ op: fc.constant('bareLF' as const), line: fc.nat() }),
    fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
  ];
}

/** Offsets just after each CRLF (where a header line could be inserted). */
export function lineStarts(b: Buffer): number[] {
  const out: number[] = [];
  for (let i = b.indexOf('\r\n'); i >= 0; i = b.indexOf('\r\n', i + 2)) out.push(i + 2);
  return out;
}

/** The start of line `k` (modulo the number of lines; 0 when there is no CRLF). */
function lineAt(lines: readonly number[], k: number): number {
  return lines.length === 0 ? 0 : lines[k % lines.length]!;
}

/** `text` and a CRLF put in at the start of line `line` (see lineAt). */
export function insertLine(input: Buffer, line: number, text: string): Buffer {
  const at = lineAt(lineStarts(input), line);
  return Buffer.concat([input.subarray(0, at), Buffer.from(text + '\r\n', 'latin1'), input.subarray(at)]);
}

export function mutateBytes(input: Buffer, m: ByteMutation): Buffer {
  const n = input.length;
  const lines = lineStarts(input);
  switch (m.op) {
    case 'flip': {
      if (n === 0) return input;
      const out = Buffer.from(input);
      out[m.at % n] = m.byte;
      return out;
    }
    case 'insert':
      return Buffer.concat([input.subarray(0, m.at % (n + 1)), Buffer.from(m.bytes, 'latin1'), input.subarray(m.at % (n + 1))]);
    case 'delete':
      return Buffer.concat([input.subarray(0, m.at % (n + 1)), input.subarray((m.at % (n + 1)) + m.len)]);
    case 'dupLine': {
      if (lines.length < 2) return input;
      const k = m.line % (lines.length - 1);
      const line = input.subarray(lines[k]!, lines[k + 1]!);
      return Buffer.concat([input.subarray(0, lines[k + 1]!), line, input.subarray(lines[k + 1]!)]);
    }
    case 'addLine':
      return insertLine(input, m.line, m.text);
    case 'bareLF': {
      if (lines.length === 0) return input;
      const at = lineAt(lines, m.line) - 2;
      return Buffer.concat([input.subarray(0, at), input.subarray(at + 1)]);
    }
    case 'truncate':
      return input.subarray(0, m.at % (n + 1));
  }
}
