/**
 * Reading the server's replies on the client side: which kind a line is, and which task it is
 * about. Works for both the text and the JSON form.
 *
 * @module
 */

/** A reply line, classified. */
export interface Reply {
  /** The reply's type, lower-case: `accepted`, `done`, `failed`, `error`, `progress`, `status`, `stats`, `pong`, `bye`, `ok`. */
  type: string;
  /** The task it is about, for `accepted`, `done`, `failed`, `progress` and `status`. */
  taskId?: number;
  /** The error code of `failed` and `error`. */
  code?: string;
  /** The line as received. */
  line: string;
}

/** Types that answer a request at once: one per request, in request order. */
export const IMMEDIATE_TYPES: ReadonlySet<string> = new Set([
  "accepted",
  "error",
  "status",
  "stats",
  "pong",
  "bye",
  "ok",
]);

/** Types that end a task: exactly one per accepted task. */
export const FINAL_TYPES: ReadonlySet<string> = new Set(["done", "failed"]);

/**
 * Classifies one reply line.
 *
 * @example
 * ```ts
 * import { parseReply } from "./replies.ts";
 * import assert from "node:assert/strict";
 * assert.equal(parseReply("DONE 3 hi").taskId, 3);
 * assert.equal(parseReply('{"type":"failed","task_id":4,"error":{"code":"timeout","message":"…"}}').code, "timeout");
 * ```
 */
export function parseReply(line: string): Reply {
  if (line.startsWith("{")) {
    try {
      const obj = JSON.parse(line) as { type?: unknown; task_id?: unknown; error?: { code?: unknown } };
      return {
        type: String(obj.type ?? "unknown"),
        taskId: typeof obj.task_id === "number" ? obj.task_id : undefined,
        code: typeof obj.error?.code === "string" ? obj.error.code : undefined,
        line,
      };
    } catch {
      return { type: "unknown", line };
    }
  }
  const words = line.split(" ", 3);
  const type = words[0].toLowerCase();
  switch (type) {
    case "accepted":
    case "done":
    case "progress":
    case "status":
      return { type, taskId: Number(words[1]), line };
    case "failed":
      return { type, taskId: Number(words[1]), code: words[2], line };
    case "error":
      return { type, code: words[1], line };
    default:
      return { type, line };
  }
}
