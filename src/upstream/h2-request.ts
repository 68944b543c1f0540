// Opens one stream on a client HTTP/2 session, without the parts of Node's ClientHttp2Session.request() that cost
// the most and do nothing for us. Measured under h2load (10 × 10 streams through the proxy), request() was the
// largest JS cost per proxied stream and its allocations the largest share of the young generation:
// - it wraps its connect callback with AsyncResource.prototype.bind, which defines two properties on the bound
//   function, each getter/setter made by util.deprecate (four closures and descriptor objects per stream: ~3 KB,
//   12 % of all the bytes a proxied stream allocates);
// - it copies the options and then adds weight, parent and exclusive to the copy, growing its property store.
// While request() runs, bind is a plain Function.prototype.bind of runInAsyncScope (what Node's own bind does
// when given a thisArg): the callback runs in the same async scope; only the deprecated `asyncResource`
// property (DEP0172) is missing from a function that never leaves Node's internals. The swap is synchronous
// and undone before returning, so no other code can observe it. Passing the priority defaults spares the copy
// its growth; the values are Node's own defaults (RFC 9113 weight 16, no parent, not exclusive).
import { AsyncResource } from 'node:async_hooks';
import type * as http2 from 'node:http2';

type Bind = AsyncResource['bind'];
const nodeBind: Bind = AsyncResource.prototype.bind;

function directBind(this: AsyncResource, fn: Parameters<Bind>[0], thisArg?: unknown): ReturnType<Bind> {
  return this.runInAsyncScope.bind(this, fn, thisArg) as ReturnType<Bind>;
}

const WITH_BODY: http2.ClientSessionRequestOptions = Object.freeze({ endStream: false, weight: 16, parent: 0, exclusive: false });
const NO_BODY: http2.ClientSessionRequestOptions = Object.freeze({ endStream: true, weight: 16, parent: 0, exclusive: false });

/** session.request(headers, { endStream }), cheaper; throws as request() does (a session closed or destroyed). */
export function openStream(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, endStream: boolean): http2.ClientHttp2Stream {
  const proto = AsyncResource.prototype as { bind: Bind };
  proto.bind = directBind as Bind;
  try {
    return session.request(headers, endStream ? NO_BODY : WITH_BODY);
  } finally {
    proto.bind = nodeBind;
  }
}
