/**
 * Keeps a flood of pipelined requests from starving new connections.
 *
 * Deno's event loop asks the OS which sockets are ready (`epoll_wait`) only when it runs out of
 * other work. A socket whose last read filled the buffer is read again without asking (its
 * readiness is kept), so fifty clients that pipeline without pause keep the loop busy with reads
 * that never wait — and a new connection's first line, or the listener's next connection, waits
 * until the loop next polls. Measured with `strace` during `deno task soak`: 0.6–1.5 s between two
 * `epoll_wait` calls of the main thread, and `/ping` from a fresh connection answered after up to
 * 2.2 s, while the loop itself never stalled.
 *
 * The gate: before each read, a connection checks when the loop last polled. If that is longer
 * ago than `intervalMs`, it waits for proof of the next poll — one byte sent through a loopback
 * socket pair of the gate's own, whose read can only complete after `epoll_wait` has run. While
 * the busy readers wait, the loop runs out of ready work and polls, and serves everything that
 * became ready meanwhile. It costs one write and one read every `intervalMs` under load, nothing
 * when the server is quiet.
 *
 * @module
 */

/** How long the loop may go without polling the OS before readers wait for it to, by default. */
export const POLL_INTERVAL_MS = 20;

/**
 * A check that the event loop polls the OS for ready sockets at least every `intervalMs`.
 *
 * @example
 * ```ts
 * import { PollGate } from "./poll_gate.ts";
 * import assert from "node:assert/strict";
 * const gate = await PollGate.open(20);
 * await new Promise((r) => setTimeout(r, 30)); // "busy" for longer than the interval
 * const wait = gate.pass(); // a promise: the loop has not been seen polling for 30 ms
 * if (wait) await wait; // resolves once the loop has polled
 * assert.equal(gate.pass(), undefined); // it just polled
 * gate.close();
 * ```
 */
export class PollGate {
  #lastPoll = performance.now();
  #waiting: Promise<void> | undefined;
  #broken = false;
  readonly #one = new Uint8Array([1]);
  readonly #sink = new Uint8Array(64);

  private constructor(
    private readonly intervalMs: number,
    private readonly writer: Deno.TcpConn,
    private readonly reader: Deno.TcpConn,
  ) {}

  /**
   * Opens the gate's loopback socket pair (a listener on 127.0.0.1, closed as soon as the pair is
   * made; a connection that is not the gate's own is turned away).
   */
  static async open(intervalMs: number = POLL_INTERVAL_MS): Promise<PollGate> {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    try {
      const accepting = listener.accept();
      const writer = await Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port });
      const mine = (writer.localAddr as Deno.NetAddr).port;
      let reader = await accepting;
      // Another local process could connect in the instant the listener is open: not ours.
      while ((reader.remoteAddr as Deno.NetAddr).port !== mine) {
        reader.close();
        reader = await listener.accept();
      }
      writer.setNoDelay(true);
      return new PollGate(intervalMs, writer, reader as Deno.TcpConn);
    } finally {
      listener.close();
    }
  }

  /**
   * `undefined` when the loop polled within the interval (the hot path: no promise, no await);
   * otherwise a promise that resolves after the loop's next poll.
   */
  pass(): Promise<void> | undefined {
    if (this.#broken || performance.now() - this.#lastPoll <= this.intervalMs) return undefined;
    return this.#waiting ??= this.#roundTrip();
  }

  /** Closes the socket pair; later calls to {@linkcode pass} never wait. */
  close(): void {
    if (this.#broken) return;
    this.#broken = true;
    for (const c of [this.writer, this.reader]) {
      try {
        c.close();
      } catch {
        // already closed
      }
    }
  }

  async #roundTrip(): Promise<void> {
    try {
      await this.writer.write(this.#one);
      // One byte in a 64-byte buffer: a short read, after which the socket's readiness is
      // forgotten — so the next round trip's read again needs a poll.
      if ((await this.reader.read(this.#sink)) === null) this.close();
    } catch {
      this.close(); // closed under us (shutdown): never hold readers up
    }
    this.#lastPoll = performance.now();
    this.#waiting = undefined;
  }
}
