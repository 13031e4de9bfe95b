/**
 * One client connection: reads bytes, frames them into lines for the server, and writes replies
 * in as few `write` calls as possible — everything queued in one event-loop turn goes out in one
 * write: measured, writes per line are the main cost of a line server (one write per line: ~60k
 * lines/s; one per read: ~230k).
 *
 * @module
 */
import { setImmediate } from "node:timers";
import { type LineEvent, LineSplitter } from "./lines.ts";
import type { ReplyHold } from "./reply_hold.ts";
import type { PollGate } from "./poll_gate.ts";
import type { StreamConn } from "./tls.ts";
import type { ReplyTarget } from "../book.ts";

const encoder = new TextEncoder();

/**
 * Backpressure: above this many reply characters waiting to be written, the connection stops
 * reading requests until the client has read enough to get below {@linkcode LOW_WATER}. TCP then
 * pushes back on a client that sends faster than it reads, instead of the server buffering.
 */
export const HIGH_WATER = 64 * 1024;
/** See {@linkcode HIGH_WATER}. */
export const LOW_WATER = 16 * 1024;
/** Bytes read per `read` call: the most request bytes one turn of the read loop handles. */
const READ_SIZE = 4 * 1024;
/** Bytes of the first reads, until one fills them. */
const FIRST_READ_SIZE = 512;

/** What a reply whose text comes later counts against `maxOutput` until it is written. */
const LATER_SIZE = 64;

/**
 * Buffers that replies are encoded into, shared by the connections and reused: a write's text
 * takes one while the write runs, instead of a new `ArrayBuffer` (and its later collection) per write.
 * Larger texts are encoded on their own.
 */
const SPARE_BYTES = 16 * 1024;
const spares: Uint8Array[] = [];
/** Spares kept when the writes that used them are over: more at once are let go. */
const MAX_SPARES = 64;

/** What a connection hands to the server. */
export interface ConnectionEvents {
  /** One event of the line framing (a line, a non-UTF-8 line, or an over-long one). */
  line(conn: Connection, event: LineEvent): void;
  /** The client stopped sending (EOF, reset, or the server stopped reading). */
  ended(conn: Connection): void;
  /** The connection is closed: called once. */
  closed(conn: Connection): void;
  /** The connection showed the right token. */
  authorized?(conn: Connection): void;
  /** More than `maxOutput` characters of replies are waiting for a client that does not read. */
  overflowed(conn: Connection): void;
  /**
   * Called before replies are written, with the replies not yet taken: resolves when what they
   * announce is durable (the journal's group commit).
   */
  beforeWrite?(): Promise<void>;
}

/** A connection's limits. */
export interface ConnectionLimits {
  /** Longest request line, bytes. */
  maxLine: number;
  /** Most reply characters that may wait to be written before the connection is closed. */
  maxOutput: number;
  /** Where an `ACCEPTED` may wait to share a write with its task's final reply (`--accept-hold`). */
  hold?: ReplyHold;
}

/**
 * A client connection.
 *
 * @example
 * ```ts ignore
 * const c = new Connection(1, tcpConn, { maxLine: 1 << 20, maxOutput: 8 << 20 }, events);
 * c.send("PONG");
 * await c.serve();
 * ```
 */
export class Connection implements ReplyTarget {
  /** Accepted tasks of this connection whose final reply is still due. */
  #outstanding = 0;
  /** Whether the read loop has finished. */
  readEnded = false;
  /** `performance.now()` when it was accepted, for `--auth-timeout`. */
  readonly openedAt = performance.now();
  /** `performance.now()` of the last complete request line or final reply, for `--idle-timeout`. */
  lastActivity = performance.now();
  /** Reply characters queued or being written. */
  #pending = 0;
  /** Whether the connection has shown the token. */
  #authorized = false;
  #writable = true;
  #stopReading = false;
  /** Set by pause(): the read loop waits on it, and close() resolves it. */
  #paused: PromiseWithResolvers<void> | undefined;
  /** Replies to write, in order; a promise is a reply whose text is known only later (the broker's ACCEPTED). */
  #out: (string | Promise<string>)[] = [];
  /** Characters counted for what is in {@linkcode #out} (a later reply counts {@linkcode LATER_SIZE}). */
  #outSize = 0;
  /** Later replies (promises) in {@linkcode #out}. */
  #outLater = 0;
  /** A flush is scheduled or running; it writes everything queued until it finds the queue empty. */
  #flushing = false;
  #flushWaiters: (() => void)[] = [];
  /** Its replies wait for the hold's timer (or this connection's next reply not held). */
  #held = false;
  /** The read loop, paused by backpressure, waiting for the output to drain. */
  #resumeReading: (() => void) | undefined;
  /** Final replies waiting for the store to have their task's end ({@linkcode sendFinal}). */
  #finalsWaiting = 0;
  /** Resolved when the last of those is queued. */
  #finalsQueued?: PromiseWithResolvers<void>;
  readonly #splitter: LineSplitter;
  /** `host:port` of the peer. */
  readonly remote: string;
  /** The peer's address alone. */
  readonly remoteHost: string;

  constructor(
    readonly id: number,
    private conn: StreamConn,
    private limits: ConnectionLimits,
    private events: ConnectionEvents,
    /** Shared by the server's connections: a flood of reads must let the loop poll for new sockets. */
    private gate?: PollGate,
  ) {
    this.#splitter = new LineSplitter(limits.maxLine);
    const addr = conn.remoteAddr as Deno.NetAddr;
    this.remoteHost = addr.hostname;
    this.remote = `${addr.hostname}:${addr.port}`;
  }

  /** Whether replies can still be written. */
  get writable(): boolean {
    return this.#writable;
  }

  /** Accepted tasks of this connection whose final reply is still due. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** Whether the connection has shown the server's token. */
  get authorized(): boolean {
    return this.#authorized;
  }

  /** The connection showed the right token. */
  authorize(): void {
    if (this.#authorized) return;
    this.#authorized = true;
    this.events.authorized?.(this);
  }

  /** Stops reading requests until the connection is closed; replies still go out. */
  pause(): void {
    this.#paused ??= Promise.withResolvers<void>();
  }

  /** Queues one reply line (without `\n`); it is written with the others of this turn. */
  send(line: string): void {
    this.#queue(line, line.length + 1);
  }

  /**
   * Sends a task's final reply once `stored` resolves (the broker: Redis has the task's end), and
   * counts the task ended. The replies queued meanwhile (a `PONG`, an `ERROR`, other tasks' replies)
   * do not wait for it: a final reply answers no request, so its place among them is free, while a
   * reply queued behind it would have waited for Redis — for as long as Redis is unreachable.
   */
  sendFinal(line: string, stored?: Promise<void>): void {
    if (!stored) {
      this.send(line);
      this.taskEnded();
      return;
    }
    this.#finalsWaiting++;
    const settle = (kept: boolean) => {
      // A store that could not keep the end says so itself (its commit never rejects): never a DONE it does not have.
      if (kept) this.send(line);
      this.taskEnded();
      if (--this.#finalsWaiting === 0) this.#finalsQueued?.resolve();
    };
    stored.then(() => settle(true), () => settle(false));
  }

  /**
   * Queues a reply whose text comes later (the broker's `ACCEPTED`, once Redis has the task): the
   * replies queued after it wait for it, so that their order stays the order of the requests.
   */
  sendLater(line: Promise<string>): void {
    this.#queue(line, LATER_SIZE);
  }

  /**
   * Queues an `ACCEPTED`. For the connection's one task in flight, with `--accept-hold`, it may wait
   * for that task's final reply, to share its write, at most the hold's time.
   */
  sendAccepted(line: string): void {
    const hold = this.limits.hold;
    const holds = hold?.enabled === true && this.#outstanding <= 1 && this.#out.length === 0;
    this.#queue(line, line.length + 1, holds ? hold : undefined);
  }

  /** The hold's time is up: what this connection holds is written now. */
  release(): void {
    if (this.#held && !this.#flushing && this.#out.length > 0 && this.#writable) this.#startFlush();
    this.#held = false;
  }

  /** Queues a reply of `size` characters; with `hold`, its write waits for the hold (see {@linkcode sendAccepted}). */
  #queue(line: string | Promise<string>, size: number, hold?: ReplyHold): void {
    if (!this.#writable) return;
    this.#pending += size;
    if (this.#pending > this.limits.maxOutput) {
      this.events.overflowed(this);
      this.close();
      return;
    }
    this.#out.push(line);
    this.#outSize += size;
    if (typeof line !== "string") this.#outLater++;
    if (this.#flushing) return;
    if (hold) {
      this.#held = true;
      hold.add(this);
    } else this.#startFlush();
  }

  #startFlush(): void {
    this.#held = false;
    this.#flushing = true;
    if (this.events.beforeWrite) setImmediate(() => this.#flush());
    else queueMicrotask(() => this.#flush());
  }

  /** One more task of this connection waits for its final reply. */
  taskAccepted(): void {
    this.#outstanding++;
  }

  /** One of this connection's tasks has had its final reply. */
  taskEnded(): void {
    // The idle sweep reads lastActivity only when no task is outstanding: the clock is read for the
    // last final reply, not for each (a clock reading per task was ~3% of the main thread's time).
    if (--this.#outstanding > 0) return;
    this.lastActivity = performance.now();
    if (this.readEnded) this.closeWhenFlushed();
  }

  /** Reads until EOF or error, handing lines to the server. */
  async serve(): Promise<void> {
    // Small until the client sends more than that at once: an idle connection holds 512 bytes, not READ_SIZE.
    let buf = new Uint8Array(FIRST_READ_SIZE);
    try {
      while (!this.#stopReading) {
        if (this.#pending > HIGH_WATER) {
          await new Promise<void>((resolve) => (this.#resumeReading = resolve));
          if (this.#stopReading) break;
        }
        const wait = this.gate?.pass();
        if (wait) await wait;
        const n = await this.conn.read(buf);
        if (n === null) break;
        const full = n === buf.length && buf.length < READ_SIZE;
        const events = this.#splitter.push(buf.subarray(0, n));
        // Activity is a whole line: a byte a second with no newline does not keep a connection open.
        if (events.length > 0) this.lastActivity = performance.now();
        for (const event of events) {
          this.events.line(this, event);
          if (this.#stopReading || this.#paused) break;
        }
        if (this.#paused) await this.#paused.promise;
        if (full) buf = new Uint8Array(READ_SIZE);
      }
    } catch {
      // Reset by the peer, or closed by us while reading: either way this connection's input is over.
    }
    this.readEnded = true;
    this.events.ended(this);
  }

  /**
   * Writes what is queued, then closes; with `finals`, the final replies still waiting for the
   * store too (a stopping server; a client's `/quit` or a timeout does not wait for Redis).
   */
  async closeWhenFlushed(finals = false): Promise<void> {
    this.#stopReading = true;
    while (finals && this.#finalsWaiting > 0 && this.#writable) {
      this.#finalsQueued ??= Promise.withResolvers<void>();
      await this.#finalsQueued.promise;
      this.#finalsQueued = undefined;
    }
    if (this.#held) this.#startFlush();
    if (this.#flushing) await new Promise<void>((resolve) => this.#flushWaiters.push(resolve));
    this.close();
  }

  /** Closes at once; queued replies are dropped. */
  close(): void {
    this.#stopReading = true;
    if (!this.#writable) return;
    this.#writable = false;
    this.#out = [];
    this.#outSize = 0;
    this.#outLater = 0;
    this.#resumeReading?.();
    this.#paused?.resolve();
    this.#finalsQueued?.resolve();
    try {
      this.conn.close();
    } catch {
      // already closed
    }
    this.events.closed(this);
  }

  async #flush(): Promise<void> {
    try {
      while (this.#out.length > 0 && this.#writable) {
        // Take the replies first: those queued while the journal commits wait for the next commit.
        const out = this.#out;
        const size = this.#outSize;
        const later = this.#outLater;
        this.#out = [];
        this.#outSize = 0;
        this.#outLater = 0;
        if (this.events.beforeWrite) await this.events.beforeWrite();
        // Only promises were queued by sendLater; without one, every reply is text already.
        const lines = later > 0 ? await Promise.all(out) : out as string[];
        const text = lines.join("\n") + "\n";
        if (!this.#writable) break;
        // UTF-8 takes at most 3 bytes per UTF-16 unit.
        const spare = text.length * 3 <= SPARE_BYTES ? spares.pop() ?? new Uint8Array(SPARE_BYTES) : undefined;
        const data = spare ? spare.subarray(0, encoder.encodeInto(text, spare).written) : encoder.encode(text);
        try {
          for (let at = 0; at < data.length;) at += await this.conn.write(data.subarray(at));
        } finally {
          if (spare && spares.length < MAX_SPARES) spares.push(spare);
        }
        this.#pending -= size;
        if (this.#resumeReading && this.#pending <= LOW_WATER) {
          this.#resumeReading();
          this.#resumeReading = undefined;
        }
      }
    } catch {
      // The client is gone: its tasks go on, and their results stay available through /status.
      this.close();
    }
    // No await between the empty-queue check above and here: a send() after this starts a new flush.
    this.#flushing = false;
    const waiters = this.#flushWaiters;
    this.#flushWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
