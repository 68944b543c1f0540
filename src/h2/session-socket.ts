// The session hung on its socket, so that socket event handlers are shared functions (`this` is the socket).
import type { Socket } from 'node:net';
import type { H2Session } from './session.js';

export const kSession = Symbol('pillion.h2session');
export type SessionSocket = Socket & { [kSession]?: H2Session };
