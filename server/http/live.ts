/**
 * The dashboard's live feed: a timer samples the server once a second, keeps the last 15 minutes
 * in fixed rings of numbers, and sends each sample to every open feed as a server-sent event. A
 * feed that opens gets the whole history first, so its charts start full.
 *
 * The cost is per second, not per task: one `stats()` call, one pass over the task names (their
 * rates from the counts, their p50/p99 from the histograms' change since the last sample), one
 * JSON text encoded once for every feed — and nothing but the sampling while no feed is open.
 *
 * @module
 */
import { type FailureRecord, quantile } from "../metrics.ts";
import type { Metrics } from "../metrics.ts";
import type { ServerStats } from "../stats.ts";
import type { WorkerStats } from "../../task/pool.ts";

/** Samples kept: 15 minutes at one a second. */
export const HISTORY = 900;
/** How often the server is sampled and the feeds are sent a snapshot (ms). */
export const SAMPLE_MS = 1000;
/** Most feeds open at once; one more is answered 503. */
export const MAX_FEEDS = 64;
/** A feed whose unsent bytes pile up past this (a stalled browser) is closed. */
const MAX_BACKLOG = 1 << 20;

/** One task name in a snapshot. */
export interface TaskSnapshot {
  name: string;
  accepted: number;
  done: number;
  failed: number;
  retried: number;
  /** Tasks of this name that ended per second, over the last sample. */
  rate: number;
  /** Median and 99th percentile of its run times over the last sample (ms); null when none ended or nothing measures them. */
  p50: number | null;
  p99: number | null;
}

/** What each live event carries. */
export interface Snapshot {
  /** `Date.now()` of the sample. */
  t: number;
  uptime_s: number;
  ready: boolean;
  draining: boolean;
  queued: number;
  running: number;
  retrying: number;
  connections: number;
  accepted: number;
  done: number;
  failed: number;
  refused: number;
  retained: number;
  /** Main-process resident memory (bytes). */
  rss: number;
  workers: WorkerStats[];
  tasks: TaskSnapshot[];
  /** Whether run times and failure details are reported to the server's metrics (by the lifecycle). */
  detailed: boolean;
  /** The last failures, newest first (empty until the lifecycle reports them: see `detailed`). */
  failures: FailureRecord[];
}

/** The history a new feed gets: aligned series, oldest first; `null` where nothing was known. */
export interface History {
  t: number[];
  queued: number[];
  running: number[];
  connections: number[];
  tasks: Record<string, { rate: (number | null)[]; p50: (number | null)[]; p99: (number | null)[] }>;
}

/** What the sampler reads. */
export interface LiveSource {
  stats(): ServerStats;
  metrics(): Metrics;
  /** Whether /readyz would answer 200, as far as can be told without waiting (the store is not probed). */
  ready(): boolean;
  draining(): boolean;
  rss(): number;
}

/** A ring of numbers. */
class Ring {
  readonly values = new Float64Array(HISTORY).fill(NaN);
  put(at: number, v: number | null | undefined): void {
    this.values[at % HISTORY] = v ?? NaN;
  }
  /** The last `n` values up to index `last`, oldest first. */
  list(last: number, n: number): (number | null)[] {
    const out: (number | null)[] = new Array(n);
    for (let k = 0; k < n; k++) {
      const v = this.values[(last - n + 1 + k + HISTORY) % HISTORY];
      out[k] = Number.isNaN(v) ? null : v;
    }
    return out;
  }
}

/** One task name's rings and what the last sample saw of it. */
interface TaskSeries {
  rate: Ring;
  p50: Ring;
  p99: Ring;
  /** done + failed at the last sample. */
  ended: number;
  /** Its duration histogram's counts at the last sample. */
  counts?: Float64Array;
}

const encoder = new TextEncoder();

/**
 * Samples the server and feeds the dashboards.
 *
 * @example
 * ```ts ignore
 * const live = new LiveFeed(source);
 * live.start();
 * return new Response(live.open(), { headers: { "content-type": "text/event-stream" } });
 * ```
 */
export class LiveFeed {
  readonly #source: LiveSource;
  readonly #feeds = new Set<ReadableStreamDefaultController<Uint8Array>>();
  readonly #t = new Ring();
  readonly #queued = new Ring();
  readonly #running = new Ring();
  readonly #connections = new Ring();
  readonly #tasks = new Map<string, TaskSeries>();
  /** Samples taken so far; the last one is at index `#samples - 1` of the rings. */
  #samples = 0;
  #lastAt = 0;
  #last: Snapshot | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  readonly #scratch = new Float64Array(64);

  constructor(source: LiveSource) {
    this.#source = source;
  }

  /** Feeds open now. */
  get feeds(): number {
    return this.#feeds.size;
  }

  /** The latest sample (taken now if none was yet). */
  get snapshot(): Snapshot {
    return this.#last ?? this.sample();
  }

  /** Starts sampling every {@linkcode SAMPLE_MS}. */
  start(): void {
    this.sample();
    this.#timer ??= setInterval(() => {
      const snap = this.sample();
      if (this.#feeds.size > 0) this.#send("snapshot", JSON.stringify(snap));
    }, SAMPLE_MS);
  }

  /** Takes one sample: into the rings, and as the latest snapshot. */
  sample(): Snapshot {
    const src = this.#source;
    const stats = src.stats();
    const metrics = src.metrics();
    const now = Date.now();
    const seconds = this.#lastAt > 0 ? Math.max(0.001, (now - this.#lastAt) / 1000) : 0;
    this.#lastAt = now;
    const at = this.#samples++;
    this.#t.put(at, now);
    this.#queued.put(at, stats.queued);
    this.#running.put(at, stats.running);
    this.#connections.put(at, stats.connections);
    const names = new Set([...stats.tasks, ...Object.keys(stats.by_task)]);
    const tasks: TaskSnapshot[] = [];
    for (const name of names) {
      const c = stats.by_task[name] ?? { accepted: 0, done: 0, failed: 0, retried: 0 };
      let s = this.#tasks.get(name);
      if (!s) {
        s = { rate: new Ring(), p50: new Ring(), p99: new Ring(), ended: c.done + c.failed };
        this.#tasks.set(name, s);
      }
      const ended = c.done + c.failed;
      const rate = seconds > 0 ? Math.max(0, ended - s.ended) / seconds : 0;
      s.ended = ended;
      let p50: number | null = null;
      let p99: number | null = null;
      const h = metrics.task(name)?.duration;
      if (h) {
        const counts = h.counts;
        const delta = counts.length <= this.#scratch.length
          ? this.#scratch.subarray(0, counts.length)
          : new Float64Array(
            counts.length,
          );
        for (let i = 0; i < counts.length; i++) delta[i] = counts[i] - (s.counts?.[i] ?? 0);
        const q50 = quantile(0.5, h.bounds, delta);
        const q99 = quantile(0.99, h.bounds, delta);
        if (q50 !== undefined) p50 = Math.round(q50 * 1e6) / 1e3;
        if (q99 !== undefined) p99 = Math.round(q99 * 1e6) / 1e3;
        if (!s.counts) s.counts = new Float64Array(counts.length);
        s.counts.set(counts);
      }
      s.rate.put(at, Math.round(rate * 100) / 100);
      s.p50.put(at, p50);
      s.p99.put(at, p99);
      tasks.push({ name, ...c, rate: Math.round(rate * 100) / 100, p50, p99 });
    }
    this.#last = {
      t: now,
      uptime_s: stats.uptime_s,
      ready: src.ready(),
      draining: src.draining(),
      queued: stats.queued,
      running: stats.running,
      retrying: stats.retrying,
      connections: stats.connections,
      accepted: stats.accepted,
      done: stats.done,
      failed: stats.failed,
      refused: stats.refused,
      retained: stats.retained_results,
      rss: src.rss(),
      workers: stats.workers,
      tasks,
      detailed: metrics.observed,
      failures: metrics.recentFailures(),
    };
    return this.#last;
  }

  /** The history of the last {@linkcode HISTORY} samples. */
  history(): History {
    const n = Math.min(this.#samples, HISTORY);
    const last = this.#samples - 1;
    const nums = (r: Ring) => r.list(last, n).map((v) => v ?? 0);
    const tasks: History["tasks"] = {};
    for (const [name, s] of this.#tasks) {
      tasks[name] = { rate: s.rate.list(last, n), p50: s.p50.list(last, n), p99: s.p99.list(last, n) };
    }
    return {
      t: nums(this.#t),
      queued: nums(this.#queued),
      running: nums(this.#running),
      connections: nums(this.#connections),
      tasks,
    };
  }

  /**
   * A new feed: the history, the latest snapshot, then one snapshot a second until the client
   * goes or {@linkcode close} is called. Undefined when {@linkcode MAX_FEEDS} are open, or after
   * {@linkcode close}.
   */
  open(): ReadableStream<Uint8Array> | undefined {
    if (this.#closed || this.#feeds.size >= MAX_FEEDS) return undefined;
    let me: ReadableStreamDefaultController<Uint8Array> | undefined;
    return new ReadableStream<Uint8Array>({
      start: (controller) => {
        me = controller;
        this.#feeds.add(controller);
        controller.enqueue(encoder.encode(
          `retry: 2000\nevent: history\ndata: ${JSON.stringify(this.history())}\n\nevent: snapshot\ndata: ${
            JSON.stringify(this.snapshot)
          }\n\n`,
        ));
      },
      cancel: () => {
        if (me) this.#feeds.delete(me);
      },
    }, { highWaterMark: MAX_BACKLOG, size: (chunk) => chunk.byteLength });
  }

  /** Sends one event to every feed; closes a feed that has stopped reading. */
  #send(event: string, data: string): void {
    const bytes = encoder.encode(`event: ${event}\ndata: ${data}\n\n`);
    for (const feed of this.#feeds) {
      if (feed.desiredSize !== null && feed.desiredSize <= 0) {
        this.#feeds.delete(feed);
        try {
          feed.close();
        } catch {
          // already closed
        }
        continue;
      }
      try {
        feed.enqueue(bytes);
      } catch {
        this.#feeds.delete(feed); // the client went
      }
    }
  }

  /** Tells every feed at once that the server is stopping: the latest snapshot, marked so (no extra sample). */
  announce(): void {
    if (this.#feeds.size > 0) {
      this.#send("snapshot", JSON.stringify({ ...this.snapshot, draining: true, ready: false }));
    }
  }

  /** Stops sampling and ends every feed. */
  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
    for (const feed of this.#feeds) {
      try {
        feed.close();
      } catch {
        // already closed
      }
    }
    this.#feeds.clear();
  }
}
