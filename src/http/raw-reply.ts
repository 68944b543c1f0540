// A complete HTTP/1.1 local reply as raw bytes, for sockets no ServerResponse owns (parse errors, refused
// upgrades). It always closes the connection: after either event the byte stream cannot be trusted.
import { STATUS_CODES } from 'node:http';
import type { Reason } from '../reasons.js';

export function rawLocalReply(reason: Reason): string {
  const body = `${reason.message}\n`;
  return (
    `HTTP/1.1 ${reason.httpStatus} ${STATUS_CODES[reason.httpStatus]}\r\n` +
    `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `x-pillion-reason: ${reason.id}\r\nconnection: close\r\n\r\n${body}`
  );
}
