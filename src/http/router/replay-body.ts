// A request body that can be sent more than once, for retries: what has arrived is held (up to a limit) and
// each attempt reads its own stream of it, then of the rest as the client sends it. Past the limit nothing more
// is held and only the attempt in flight gets the body: a body that was not held whole is never sent again, so a
// retry never carries a truncated or spliced body.
import { Readable } from 'node:stream';
import type { HeaderMap } from '../headers.js';
import { requestTrailersOf, setRequestTrailers } from '../../upstream/pool.js';

const kOwner = Symbol('pillion.replayBody');
type Source = Readable & { [kOwner]?: ReplayableBody };

/** One attempt's copy of the body. Its reads let the client's body flow on (backpressure reaches the client). */
class AttemptBody extends Readable {
  constructor(private readonly owner: ReplayableBody) {
    super();
  }

  override _read(): void {
    this.owner.wantMore(this);
  }
}

export class ReplayableBody {
  /** The body so far; null once it outgrew the limit (or was released). */
  private held: Buffer[] | null = [];
  private heldBytes = 0;
  private ended = false;
  /** The client's request trailers, handed to every attempt's body with its end. */
  private trailers: HeaderMap | null = null;
  /** The body of the attempt in flight; null between attempts (the client's body is paused then). */
  private current: AttemptBody | null = null;
  /** Body bytes the client sent, whatever the attempts did with them (the access log's bytes_received). */
  received = 0;

  constructor(
    private readonly source: Readable,
    private readonly limit: number,
  ) {
    (source as Source)[kOwner] = this;
    source.on('data', onSourceData);
    source.on('end', onSourceEnd);
  }

  /** Whether another attempt can still get the whole body. */
  get replayable(): boolean {
    return this.held !== null;
  }

  /** A stream of the whole body for the next attempt, or null when the body can no longer be sent again. */
  open(): Readable | null {
    if (this.held === null) return null;
    const body = new AttemptBody(this);
    this.current = body;
    for (const chunk of this.held) body.push(chunk);
    if (this.ended) this.endAttempt(body);
    else this.source.resume();
    return body;
  }

  /** The attempt in flight failed: its stream gets nothing more, and the client's body waits for the next one. */
  detach(): void {
    this.current = null;
    if (!this.ended) this.source.pause();
  }

  /** The exchange is over: drop what is held and stop listening. */
  release(): void {
    this.held = null;
    this.current = null;
    const source = this.source as Source;
    source.off('data', onSourceData);
    source.off('end', onSourceEnd);
    source[kOwner] = undefined;
    // What the client still sends (an early answer went out) is read and dropped, not left to stall its stream.
    if (!this.ended) source.resume();
  }

  wantMore(body: AttemptBody): void {
    if (body === this.current && !this.ended) this.source.resume();
  }

  onData(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.held !== null) {
      this.heldBytes += chunk.length;
      if (this.heldBytes > this.limit) this.held = null;
      else this.held.push(chunk);
    }
    const body = this.current;
    if (body === null || !body.push(chunk)) this.source.pause();
  }

  onEnd(): void {
    this.ended = true;
    this.trailers = requestTrailersOf(this.source);
    if (this.current !== null) this.endAttempt(this.current);
  }

  private endAttempt(body: AttemptBody): void {
    if (this.trailers !== null) setRequestTrailers(body, this.trailers);
    body.push(null);
  }
}

function onSourceData(this: Source, chunk: Buffer): void {
  this[kOwner]?.onData(chunk);
}

function onSourceEnd(this: Source): void {
  this[kOwner]?.onEnd();
}
