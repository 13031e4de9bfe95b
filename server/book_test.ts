import assert from "node:assert/strict";
import { FailedTasks, newRecord, TaskBook } from "./book.ts";

Deno.test("TaskBook: finds every live task across index chunks, forgets the oldest finished beyond the limit", () => {
  const book = new TaskBook({ ttlMs: 60_000, max: 100 });
  const n = 10_000;
  for (let id = 1; id <= n; id++) {
    book.add(newRecord({ id, task: "echo", format: "text", state: "queued", attempts: 0 }));
  }
  for (let id = 2; id <= n; id++) {
    const rec = book.get(id)!;
    rec.state = "done";
    book.finish(rec, 1000);
  }
  assert.equal(book.live, 1);
  assert.equal(book.retained, 100);
  assert.equal(book.get(1)?.state, "queued", "a long-running task keeps its place");
  assert.equal(book.get(2), undefined);
  assert.equal(book.get(n - 100), undefined);
  assert.equal(book.get(n - 99)?.state, "done");
  assert.equal(book.get(n)?.id, n);
  assert.deepEqual([...book.unfinished()].map((r) => r.id), [1]);
  book.sweep(1000 + 60_000);
  assert.equal(book.retained, 0, "past the TTL");
  assert.equal(book.get(n), undefined);
});

Deno.test("TaskBook: a byte budget forgets the oldest results first, whatever their count", () => {
  const book = new TaskBook({ ttlMs: 60_000, max: 1000, maxBytes: 10 * 1024 });
  const big = JSON.stringify("x".repeat(2000)); // ~4 KiB held per record
  for (let id = 1; id <= 5; id++) {
    const rec = book.add(newRecord({ id, task: "echo", format: "text", state: "done", attempts: 1, json: big }));
    book.finish(rec, 1000);
  }
  assert.equal(book.retained, 2, "two of ~4 KiB fit in 10 KiB");
  assert.ok(book.retainedBytes <= 10 * 1024);
  assert.equal(book.get(3), undefined, "the older ones went first");
  assert.equal(book.get(5)?.json, big);
});

/** A failed task's record, finished at `at`. */
const failure = (id: number, at: number, data?: string) =>
  newRecord({
    id,
    task: "echo",
    format: "text",
    state: "failed",
    attempts: 1,
    data,
    finishedAt: at,
    error: { code: "handler_error", message: "no" },
  });

Deno.test("FailedTasks: forgets failures past the keep time, oldest first", () => {
  const failed = new FailedTasks({ keepMs: 60_000, maxBytes: 1024 * 1024 });
  failed.add(failure(1, 0));
  failed.add(failure(2, 30_000));
  assert.equal(failed.size, 2);
  failed.add(failure(3, 60_000)); // task 1 is 60 s old now
  assert.deepEqual(failed.newest(10).map((r) => r.id), [3, 2]);
  failed.sweep(90_000);
  assert.deepEqual(failed.newest(10).map((r) => r.id), [3]);
  assert.equal(failed.get(3)?.error?.code, "handler_error");
  failed.sweep(120_000);
  assert.equal(failed.size, 0);
});

Deno.test("FailedTasks: a byte budget forgets the oldest failures first, whatever their age", () => {
  const failed = new FailedTasks({ keepMs: 3_600_000, maxBytes: 10 * 1024 });
  const data = "x".repeat(2000); // ~4 KiB counted per failure
  for (let id = 1; id <= 5; id++) failed.add(failure(id, 1000, data));
  assert.deepEqual(failed.newest(10).map((r) => r.id), [5, 4], "two of ~4 KiB fit in 10 KiB");
  assert.ok(failed.delete(4));
  assert.ok(!failed.delete(4));
  assert.equal(failed.size, 1);
});
