/**
 * Who may use the server: which listen addresses are this machine's only, and how failed `/auth`
 * attempts are slowed down. The token itself is checked by `token.ts`.
 *
 * @module
 */

/**
 * Whether a listen address only accepts connections from this machine.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./auth.ts";
 * import assert from "node:assert/strict";
 * assert.equal(isLoopback("127.0.0.1"), true);
 * assert.equal(isLoopback("0.0.0.0"), false);
 * ```
 */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** How long the answer to a wrong token is held back, at most. */
export const MAX_AUTH_DELAY_MS = 5000;

/**
 * Failed `/auth` attempts per peer address: each one answered later than the last (100 ms, then
 * doubling up to {@linkcode MAX_AUTH_DELAY_MS}), so that guessing is slow; and at most one log line
 * per peer a minute, so that guessing does not flood the log. A peer that stops failing for a
 * minute starts again from nothing.
 *
 * @example
 * ```ts
 * import { AuthThrottle } from "./auth.ts";
 * import assert from "node:assert/strict";
 * const t = new AuthThrottle();
 * const first = t.failed("10.0.0.1", 0);
 * assert.deepEqual(first, { delayMs: 100, log: true, failures: 1 });
 * assert.deepEqual(t.failed("10.0.0.1", 1000), { delayMs: 200, log: false, failures: 2 });
 * assert.equal(t.failed("10.0.0.1", 62_000).log, true); // a minute on: one line, with the count
 * ```
 */
export class AuthThrottle {
  readonly #peers = new Map<string, { failures: number; last: number; loggedAt: number; unlogged: number }>();

  /** Records a failure from `peer` at `now`: how long to hold the answer, and whether to log it. */
  failed(peer: string, now: number = Date.now()): { delayMs: number; log: boolean; failures: number } {
    let p = this.#peers.get(peer);
    if (p && now - p.last > 60_000) p = undefined;
    if (!p) {
      if (this.#peers.size >= 10_000) this.#forget(now);
      p = { failures: 0, last: now, loggedAt: -Infinity, unlogged: 0 };
      this.#peers.set(peer, p);
    }
    p.failures++;
    p.last = now;
    const log = now - p.loggedAt >= 60_000;
    if (log) p.loggedAt = now;
    return { delayMs: Math.min(MAX_AUTH_DELAY_MS, 100 * 2 ** Math.min(p.failures - 1, 10)), log, failures: p.failures };
  }

  /** Forgets peers quiet for a minute (and, should that not be enough, the oldest). */
  #forget(now: number): void {
    for (const [peer, p] of this.#peers) if (now - p.last > 60_000) this.#peers.delete(peer);
    if (this.#peers.size >= 10_000) this.#peers.delete(this.#peers.keys().next().value!);
  }
}
