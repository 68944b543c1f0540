// HTTP/2 error codes (RFC 9113 §7), shared by every part of the codec and its users.

export const enum H2Error {
  NO_ERROR = 0,
  PROTOCOL_ERROR = 1,
  INTERNAL_ERROR = 2,
  FLOW_CONTROL_ERROR = 3,
  SETTINGS_TIMEOUT = 4,
  STREAM_CLOSED = 5,
  FRAME_SIZE_ERROR = 6,
  REFUSED_STREAM = 7,
  CANCEL = 8,
  COMPRESSION_ERROR = 9,
  CONNECT_ERROR = 10,
  ENHANCE_YOUR_CALM = 11,
  INADEQUATE_SECURITY = 12,
  HTTP_1_1_REQUIRED = 13,
}

const ERROR_NAMES = [
  'NO_ERROR', 'PROTOCOL_ERROR', 'INTERNAL_ERROR', 'FLOW_CONTROL_ERROR', 'SETTINGS_TIMEOUT', 'STREAM_CLOSED',
  'FRAME_SIZE_ERROR', 'REFUSED_STREAM', 'CANCEL', 'COMPRESSION_ERROR', 'CONNECT_ERROR', 'ENHANCE_YOUR_CALM',
  'INADEQUATE_SECURITY', 'HTTP_1_1_REQUIRED',
];

/** An HTTP/2 error code's name, for logs and error messages. */
export function h2ErrorName(code: number): string {
  return ERROR_NAMES[code] ?? `error ${code}`;
}
