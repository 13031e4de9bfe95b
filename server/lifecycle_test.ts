/**
 * The lifecycle without sockets: plain reply targets, a fake clock for retry delays, a real pool
 * of real workers.
 */
import assert from "node:assert/strict";
import { type Clock, MAX_INTERRUPTED_RUNS, type ReplyTarget, TaskLifecycle } from "./lifecycle.ts";
import { MemoryStore } from "./store/memory.ts";
import { DEFAULT_SERVE_OPTIONS } from "./options.ts";

const FIXTURES = new URL("../tests/fixtures/handlers.ts", import.meta.url).href;

/** A reply target that keeps what it is sent. */
function target(): ReplyTarget & { lines: string[]; open: number } {
  return {
    lines: [] as string[],
    open: 0,
    writable: true,
    send(line: string) {
      this.lines.push(line);
    },
    sendFinal(line: string, stored?: Promise<void>) {
      const settle = () => {
        this.send(line);
        this.taskEnded();
      };
      if (stored) stored.then(settle);
      else settle();
    },
    taskAccepted() {
      this.open++;
    },
    taskEnded() {
      this.open--;
    },
  };
}

/** A clock whose timers run only when the test says so. */
function fakeClock(): Clock & { advance(ms: number): void; pending: number } {
  let now = 1_000_000;
  const timers = new Map<number, { at: number; fn: () => void }>();
  let next = 0;
  return {
    now: () => now,
    setTimeout(fn, ms) {
      timers.set(++next, { at: now + ms, fn });
      return next;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    advance(ms: number) {
      now += ms;
      for (const [id, t] of [...timers]) {
        if (t.at <= now) {
          timers.delete(id);
          t.fn();
        }
      }
    },
    get pending() {
      return timers.size;
    },
  };
}

function lifecycle(clock: Clock, retries = 0) {
  const o = { ...DEFAULT_SERVE_OPTIONS, workers: 1, retries, retryBackoffMs: 60_000, retryMaxDelayMs: 60_000 };
  return new TaskLifecycle(
    new MemoryStore(),
    { ...o, settings: { smsDelayMs: 10, modules: [FIXTURES] } },
    { has: (task) => ["echo", "fail"].includes(task), retriesOf: () => undefined },
    o,
    clock,
  );
}

async function until(check: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !check(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(check(), "timed out");
}

Deno.test("TaskLifecycle.submit() runs a task to its one final reply, and files it for /status", async () => {
  const l = lifecycle(fakeClock());
  const t = target();
  try {
    const id = l.submit({ task: "echo", data: "hi", format: "text", connId: 1, size: 2 }, t);
    assert.equal(t.open, 1);
    await l.allFinished();
    assert.deepEqual(t.lines, [`DONE ${id} hi`]);
    assert.equal(t.open, 0);
    assert.equal(l.get(id)?.state, "done");
    assert.equal(l.get(id)?.json, '"hi"');
  } finally {
    await l.pool.close();
  }
});

Deno.test("TaskLifecycle: a failed attempt waits out its backoff on the clock, then runs again", async () => {
  const clock = fakeClock();
  const l = lifecycle(clock, 1);
  const t = target();
  try {
    const id = l.submit({ task: "fail", data: "x", format: "text", connId: 1, size: 2 }, t);
    await until(() => l.retrying === 1);
    assert.match(t.lines[0], new RegExp(`^PROGRESS ${id} 0 attempt 1 of 2 failed`));
    assert.equal(l.get(id)?.state, "queued", "waiting to retry is queued");
    clock.advance(29_999); // the first retry waits between half and all of 60 s
    assert.equal(l.retrying, 1);
    clock.advance(30_001);
    await l.allFinished();
    assert.match(t.lines.at(-1)!, new RegExp(`^FAILED ${id} handler_error .*\\(after 2 attempts\\)`));
    assert.equal(l.counts.of("fail").retried, 1);
  } finally {
    await l.pool.close();
  }
});

Deno.test("TaskLifecycle.recover() requeues queued tasks as they were, and fails only the poisoned running one", async () => {
  const l = lifecycle(fakeClock());
  try {
    const base = { task: "echo", format: "text" as const, attempts: 0, data: "d" };
    l.recover({
      maxId: 9,
      finished: [{
        id: 1,
        task: "echo",
        format: "text",
        state: "done",
        attempts: 1,
        json: '"a"',
        finishedAt: 1_000_000,
        acceptedAt: 999_000,
      }],
      unfinished: [
        { ...base, id: 2, interrupted: MAX_INTERRUPTED_RUNS + 1, wasRunning: true },
        { ...base, id: 3, interrupted: 0, wasRunning: false },
        { ...base, id: 4, interrupted: 1, wasRunning: true },
        { ...base, id: 5, task: "gone", interrupted: 0, wasRunning: false },
      ],
    });
    assert.equal(l.lastId, 9);
    await l.allFinished();
    assert.deepEqual([1, 2, 3, 4, 5].map((id) => l.get(id)?.state), ["done", "failed", "done", "done", "failed"]);
    assert.equal(l.get(2)?.error?.code, "worker_crashed");
    assert.match(l.get(5)?.error?.message ?? "", /no task "gone" any more/);
  } finally {
    await l.pool.close();
  }
});

Deno.test("TaskLifecycle.full() refuses by bytes held by unfinished tasks, and frees them when tasks end", async () => {
  const o = { ...DEFAULT_SERVE_OPTIONS, workers: 1, maxQueueBytes: 1000 };
  const l = new TaskLifecycle(
    new MemoryStore(),
    { ...o, settings: { smsDelayMs: 10, modules: [FIXTURES] } },
    { has: () => true, retriesOf: () => undefined },
    o,
    fakeClock(),
  );
  const t = target();
  try {
    assert.equal(l.full(600), undefined);
    l.submit({ task: "slow", data: 200, format: "text", connId: 1, size: 600 }, t);
    assert.equal(l.full(600), "bytes", "600 + 600 is over 1000");
    assert.equal(l.full(300), undefined);
    await l.allFinished();
    assert.equal(l.queuedBytes, 0);
    assert.equal(l.full(600), undefined);
  } finally {
    await l.pool.close();
  }
});
