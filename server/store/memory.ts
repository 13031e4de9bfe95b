/**
 * The store of a server without `--journal`: nothing is written anywhere, so nothing waits. The
 * lifecycle's book of tasks is the only copy, and a restart starts empty.
 *
 * @module
 */
import type { AcceptedTask, Recovered, TaskEnd, TaskStore } from "./store.ts";

const resolved = Promise.resolve();

/**
 * A store that keeps nothing past the process.
 *
 * @example
 * ```ts
 * import { MemoryStore } from "./memory.ts";
 * import assert from "node:assert/strict";
 * const store = new MemoryStore();
 * assert.deepEqual(await store.load(0), { unfinished: [], finished: [], maxId: 0 });
 * store.accepted({ id: 1, task: "echo", data: "hi", format: "text", attempts: 0 });
 * await store.commit(); // at once: there is no disk
 * ```
 */
export class MemoryStore implements TaskStore {
  readonly name = "memory";
  readonly durable = false;
  load(_since: number, _failedSince?: number): Promise<Recovered> {
    return Promise.resolve({ unfinished: [], finished: [], maxId: 0 });
  }
  accepted(_task: AcceptedTask): void {}
  started(_id: number, _attempt: number): void {}
  attemptFailed(_id: number, _attempt: number): void {}
  ended(_id: number, _end: TaskEnd): void {}
  discarded(_id: number): void {}
  saveState(_key: string, _json: string): void {}
  commit(): Promise<void> {
    return resolved;
  }
  sweep(_before: number, _keep: number, _failedBefore?: number): Promise<void> {
    return resolved;
  }
  close(): Promise<void> {
    return resolved;
  }
}
