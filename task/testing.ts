/**
 * Calling a handler outside the server, in tests and examples.
 *
 * @module
 */
import type { TaskContext, TaskLogLevel } from "./types.ts";

/**
 * A context for calling a handler outside the server (tests, examples): progress and log calls
 * are collected in the returned arrays.
 *
 * @example
 * ```ts
 * import { testContext } from "./testing.ts";
 * import assert from "node:assert/strict";
 * const ctx = testContext({ taskId: 7 });
 * ctx.progress(50, "half way");
 * assert.deepEqual(ctx.reports, [{ percent: 50, message: "half way" }]);
 * ```
 */
export function testContext(
  over: Partial<Pick<TaskContext, "taskId" | "task" | "attempt" | "signal">> = {},
): TaskContext & {
  reports: { percent: number; message?: string }[];
  logs: { level: TaskLogLevel; message: string }[];
} {
  const reports: { percent: number; message?: string }[] = [];
  const logs: { level: TaskLogLevel; message: string }[] = [];
  const at = (level: TaskLogLevel) => (message: string) => void logs.push({ level, message });
  return {
    taskId: 1,
    task: "test",
    attempt: 1,
    signal: new AbortController().signal,
    ...over,
    progress: (percent, message) => void reports.push(message === undefined ? { percent } : { percent, message }),
    logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") },
    reports,
    logs,
  };
}
