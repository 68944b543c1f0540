// HTTP/2 frame layout (RFC 9113 §4, §6): type, flag and setting numbers, and the writers that put a frame
// header or a small control frame into a caller's buffer. No allocation here: the session owns the buffers.

export const FRAME_HEADER = 9;
/** Our SETTINGS_MAX_FRAME_SIZE stays at the protocol's initial value: a larger frame is a FRAME_SIZE_ERROR. */
export const MAX_FRAME = 16_384;
export const MAX_WINDOW = 0x7fffffff;
export const DEFAULT_WINDOW = 65_535;

export const enum FrameType {
  DATA = 0,
  HEADERS = 1,
  PRIORITY = 2,
  RST_STREAM = 3,
  SETTINGS = 4,
  PUSH_PROMISE = 5,
  PING = 6,
  GOAWAY = 7,
  WINDOW_UPDATE = 8,
  CONTINUATION = 9,
}

export const enum Flag {
  END_STREAM = 0x1,
  ACK = 0x1,
  END_HEADERS = 0x4,
  PADDED = 0x8,
  PRIORITY = 0x20,
}

export const enum Setting {
  HEADER_TABLE_SIZE = 1,
  ENABLE_PUSH = 2,
  MAX_CONCURRENT_STREAMS = 3,
  INITIAL_WINDOW_SIZE = 4,
  MAX_FRAME_SIZE = 5,
  MAX_HEADER_LIST_SIZE = 6,
}

/** The client connection preface (RFC 9113 §3.4), 24 octets. */
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** The 24-bit payload length of the frame header at buf[off..]. */
export function readFrameLength(buf: Buffer, off: number): number {
  return (buf[off]! << 16) | (buf[off + 1]! << 8) | buf[off + 2]!;
}

export function writeFrameHeader(buf: Buffer, off: number, length: number, type: number, flags: number, stream: number): void {
  buf[off] = length >>> 16;
  buf[off + 1] = (length >>> 8) & 0xff;
  buf[off + 2] = length & 0xff;
  buf[off + 3] = type;
  buf[off + 4] = flags;
  buf.writeUInt32BE(stream & 0x7fffffff, off + 5);
}

/** RST_STREAM, 13 octets. Returns the end offset. */
export function writeRstStream(buf: Buffer, off: number, stream: number, code: number): number {
  writeFrameHeader(buf, off, 4, FrameType.RST_STREAM, 0, stream);
  buf.writeUInt32BE(code >>> 0, off + 9);
  return off + 13;
}

/** WINDOW_UPDATE, 13 octets. */
export function writeWindowUpdate(buf: Buffer, off: number, stream: number, increment: number): number {
  writeFrameHeader(buf, off, 4, FrameType.WINDOW_UPDATE, 0, stream);
  buf.writeUInt32BE(increment & 0x7fffffff, off + 9);
  return off + 13;
}

/** GOAWAY without debug data, 17 octets. */
export function writeGoaway(buf: Buffer, off: number, lastStream: number, code: number): number {
  writeFrameHeader(buf, off, 8, FrameType.GOAWAY, 0, 0);
  buf.writeUInt32BE(lastStream & 0x7fffffff, off + 9);
  buf.writeUInt32BE(code >>> 0, off + 13);
  return off + 17;
}

/** PING ACK echoing the 8 opaque octets at src[srcOff..], 17 octets. */
export function writePingAck(buf: Buffer, off: number, src: Buffer, srcOff: number): number {
  writeFrameHeader(buf, off, 8, FrameType.PING, Flag.ACK, 0);
  src.copy(buf, off + 9, srcOff, srcOff + 8);
  return off + 17;
}

/** SETTINGS ACK, 9 octets. */
export function writeSettingsAck(buf: Buffer, off: number): number {
  writeFrameHeader(buf, off, 0, FrameType.SETTINGS, Flag.ACK, 0);
  return off + 9;
}

/** One SETTINGS parameter (6 octets) after the frame header the caller writes. */
export function writeSetting(buf: Buffer, off: number, id: number, value: number): number {
  buf.writeUInt16BE(id, off);
  buf.writeUInt32BE(value >>> 0, off + 2);
  return off + 6;
}
