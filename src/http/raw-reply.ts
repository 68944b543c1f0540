// A complete HTTP/1.1 local reply as raw bytes, for sockets no ServerResponse owns (parse errors, refused
// upgrades). It always closes the connection: after either event the byte stream cannot be trusted.
import { STATUS_CODES } from 'node:http';
import type { Reason } from '../reasons.js';

let dateValue = '';
let dateSecond = -1;

/** The `date` header value for replies the proxy makes itself (RFC 9110 §6.6.1), formatted once a second. */
export function httpDate(): string {
  const second = Math.floor(Date.now() / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(second * 1000).toUTCString();
  }
  return dateValue;
}

/**
 * `toHead`: the reply answers a HEAD request, so it has no body (its content-length is the body's a GET would get).
 * `detail` follows the reason's message in the body, as in an exchange's local reply.
 */
export function rawLocalReply(reason: Reason, toHead = false, detail?: string): string {
  const body = detail === undefined ? `${reason.message}\n` : reason.message === '' ? `${detail}\n` : `${reason.message}: ${detail}\n`;
  return (
    `HTTP/1.1 ${reason.httpStatus} ${STATUS_CODES[reason.httpStatus]}\r\ndate: ${httpDate()}\r\n` +
    `content-type: text/plain; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
    `x-pillion-reason: ${reason.id}\r\nconnection: close\r\n\r\n${toHead ? '' : body}`
  );
}
