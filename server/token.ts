/**
 * The shared token of `--token` (or `ASYNCTASK_TOKEN`), compared in constant time — both sides are
 * hashed to fixed-length digests first, so neither the content nor the length of the expected
 * token leaks through timing.
 *
 * Apart from `auth.ts` because of node:crypto, which costs a server that has no token over a MiB
 * of resident memory: the server loads this module only when it has a token.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";

/**
 * A token check.
 *
 * @example
 * ```ts
 * import { TokenCheck } from "./token.ts";
 * import assert from "node:assert/strict";
 * const check = new TokenCheck("s3cret");
 * assert.equal(check.matches("s3cret"), true);
 * assert.equal(check.matches("guess"), false);
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
