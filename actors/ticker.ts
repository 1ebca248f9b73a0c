/**
 * The ticker: real time becomes `raft.tick`. Ticks are counted by the monotonic clock, so a
 * stalled event loop delivers the ticks it missed (bounded) rather than silently stretching
 * every timeout, and a long pause is reported so the node can count it as contact lost, not
 * as silence from everyone else.
 */
import type { RaftEvent } from '../machines/raft/index.ts';

export interface TickerOptions {
  readonly tickMs: number;
  readonly raft: (event: RaftEvent) => void;
  /** Called when the loop was paused for more than `pauseMs` (a GC pause, SIGSTOP, a slow disk). */
  readonly onPause?: (pausedMs: number) => void;
  readonly pauseMs?: number;
}

export class Ticker {
  private timer: NodeJS.Timeout | null = null;
  private next = 0;

  constructor(private readonly opts: TickerOptions) {}

  start(): void {
    if (this.timer !== null) return;
    this.next = performance.now() + this.opts.tickMs;
    this.timer = setInterval(() => this.fire(), this.opts.tickMs);
    this.timer.unref?.();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  private fire(): void {
    const now = performance.now();
    const late = now - this.next;
    const pauseMs = this.opts.pauseMs ?? 5 * this.opts.tickMs;
    if (late > pauseMs) {
      // After a pause, do not fire a burst of ticks that would time everyone out at once.
      this.opts.onPause?.(late);
      this.next = now + this.opts.tickMs;
      this.opts.raft({ type: 'raft.tick' });
      return;
    }
    let n = 0;
    while (this.next <= now && n < 3) {
      this.next += this.opts.tickMs;
      this.opts.raft({ type: 'raft.tick' });
      n++;
    }
    if (this.next <= now) this.next = now + this.opts.tickMs;
  }
}
