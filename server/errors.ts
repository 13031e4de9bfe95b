/**
 * Why the server could not start: a message for a person, naming the fix.
 *
 * @example
 * ```ts
 * import { StartError } from "./errors.ts";
 * import assert from "node:assert/strict";
 * assert.equal(new StartError("no").name, "StartError");
 * ```
 */
export class StartError extends Error {
  override name = "StartError";
}
