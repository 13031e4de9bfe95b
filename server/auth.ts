/**
 * Who may use the server: the shared token of `--token` (or `ASYNCTASK_TOKEN`), compared in
 * constant time — both sides are hashed to fixed-length digests first, so neither the content nor
 * the length of the expected token leaks through timing.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";

/**
 * A token check.
 *
 * @example
 * ```ts
 * import { TokenCheck } from "./auth.ts";
 * const check = new TokenCheck("s3cret");
 * console.log(check.matches("s3cret"), check.matches("guess")); // true false
 * ```
 */
export class TokenCheck {
  readonly #digest: Uint8Array;

  constructor(token: string) {
    this.#digest = digest(token);
  }

  /** Whether `candidate` is the token. */
  matches(candidate: string): boolean {
    return timingSafeEqual(digest(candidate), this.#digest);
  }
}

function digest(text: string): Uint8Array {
  return createHash("sha256").update(text, "utf8").digest();
}

/**
 * Whether a listen address only accepts connections from this machine.
 *
 * @example
 * ```ts
 * import { isLoopback } from "./auth.ts";
 * console.log(isLoopback("127.0.0.1"), isLoopback("0.0.0.0")); // true false
 * ```
 */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
