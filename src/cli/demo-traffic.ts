// The demo's traffic generator: GETs at a fixed rate to the frontend's sidecar (open loop, bounded in flight),
// counting outcomes since start and per second for the recent success rate.
import { Agent, request } from 'node:http';

/** Sends GETs at a fixed rate (open loop, bounded in-flight) and counts outcomes per second. */
export class TrafficGenerator {
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 64 });
  private timer: NodeJS.Timeout | undefined;
  private inFlight = 0;
  private readonly maxInFlight = 256;
  total = { sent: 0, ok: 0, failed: 0, errors: 0, dropped: 0 };
  /** Completed-request counts by second, for the last-second rate. */
  private window: Array<{ at: number; ok: number; failed: number }> = [];

  constructor(
    private readonly port: number,
    private readonly host: string,
    private readonly rate: number,
  ) {}

  start(): void {
    const started = performance.now();
    let sent = 0;
    this.timer = setInterval(() => {
      const due = Math.floor(((performance.now() - started) / 1000) * this.rate);
      while (sent < due) {
        sent++;
        if (this.inFlight >= this.maxInFlight) this.total.dropped++;
        else this.fire();
      }
    }, 5);
  }

  private fire(): void {
    this.inFlight++;
    this.total.sent++;
    // Exactly one outcome per request: a body cut short (a sidecar killed mid-response, the timeout below) ends the
    // response with 'error', never 'end', and the request may emit 'error' as well.
    let settled = false;
    const finish = (outcome: 'ok' | 'failed' | 'error'): void => {
      if (settled) return;
      settled = true;
      this.done(outcome);
    };
    const req = request({ host: '127.0.0.1', port: this.port, path: '/', agent: this.agent, headers: { host: this.host } }, (res) => {
      res.resume();
      res.on('end', () => finish((res.statusCode ?? 0) >= 200 && (res.statusCode ?? 0) < 300 ? 'ok' : 'failed'));
      res.on('error', () => finish('error'));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', () => finish('error'));
    req.end();
  }

  private done(outcome: 'ok' | 'failed' | 'error'): void {
    this.inFlight--;
    if (outcome === 'ok') this.total.ok++;
    else if (outcome === 'failed') this.total.failed++;
    else this.total.errors++;
    const now = Math.floor(Date.now() / 1000);
    let last = this.window[this.window.length - 1];
    if (!last || last.at !== now) {
      last = { at: now, ok: 0, failed: 0 };
      this.window.push(last);
      if (this.window.length > 10) this.window.shift();
    }
    if (outcome === 'ok') last.ok++;
    else last.failed++;
  }

  /** Completions per second and success share over the last `seconds` full seconds. */
  recent(seconds: number): { rps: number; success: number } {
    const now = Math.floor(Date.now() / 1000);
    const slots = this.window.filter((w) => w.at < now && w.at >= now - seconds);
    const ok = slots.reduce((a, w) => a + w.ok, 0);
    const all = slots.reduce((a, w) => a + w.ok + w.failed, 0);
    return { rps: all / Math.max(1, seconds), success: all > 0 ? ok / all : NaN };
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    const deadline = Date.now() + 3000;
    while (this.inFlight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    this.agent.destroy();
  }
}
