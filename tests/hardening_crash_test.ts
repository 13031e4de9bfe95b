/**
 * Hardening B: a crash does not fail the innocent. When a worker dies, only the task that killed it
 * fails (`worker_crashed`); the others on it run again without spending a retry. Through real
 * worker threads.
 *
 * @module
 */
import assert from "node:assert/strict";
import { fixture, moduleTask, type PoolRun, SLEEP, withPool } from "./hardening_pool.ts";

const CRASH = moduleTask("crash", "hardening_crash.ts");

function assertDone(run: PoolRun, ids: number[]): void {
  for (const id of ids) {
    const all = run.outcomes.get(id) ?? [];
    assert.equal(all.length, 1, `task ${id} settled once: ${JSON.stringify(all)}`);
    assert.ok(all[0].ok, `task ${id} completed: ${JSON.stringify(all[0])}`);
  }
}

function assertCrashed(run: PoolRun, id: number, message: RegExp): void {
  const all = run.outcomes.get(id) ?? [];
  assert.equal(all.length, 1, `task ${id} settled once: ${JSON.stringify(all)}`);
  const o = all[0];
  assert.ok(!o.ok && o.code === "worker_crashed", JSON.stringify(o));
  assert.match(o.message, message);
}

Deno.test("one crashing task among 20 sleeping ones on one worker: only the crasher fails, the 20 complete", async () => {
  await withPool({ tasks: [CRASH, SLEEP] }, async (run) => {
    // All in one batch: they start in the same turn, so nothing but the worker's word tells them apart.
    const sleepers = Array.from({ length: 10 }, () => run.submit("sleep", 300));
    const crasher = run.submit("crash", {});
    sleepers.push(...Array.from({ length: 10 }, () => run.submit("sleep", 300)));
    await run.settled([crasher, ...sleepers]);
    assertCrashed(run, crasher, /^worker 1 crashed: boom from a crashing handler$/);
    assertDone(run, sleepers);
    assert.deepEqual(run.events, [{
      kind: "crashed",
      worker: 1,
      reason: "boom from a crashing handler",
      failed: [crasher],
      requeued: sleepers.sort((a, b) => a - b),
    }]);
    assert.equal(run.pool.stats()[0].restarts, 1);
  });
});

Deno.test("a task that crashes its worker late, after others started, is the one that fails", async () => {
  await withPool({ tasks: [CRASH, SLEEP] }, async (run) => {
    const crasher = run.submit("crash", { after: 400 });
    await new Promise((r) => setTimeout(r, 100));
    const sleepers = Array.from({ length: 5 }, () => run.submit("sleep", 600));
    await run.settled([crasher, ...sleepers]);
    assertCrashed(run, crasher, /^worker 1 crashed: boom from a crashing handler$/);
    assertDone(run, sleepers);
    // Run again: as a new attempt, counted as a requeue (the server spends no retry on it).
    const again = run.outcomes.get(sleepers[0])![0];
    assert.equal(again.attempt, 2);
  });
});

Deno.test("a handler that closes its own worker is the one that fails; the others run again", async () => {
  await withPool({ tasks: [SLEEP], modules: [fixture("handlers.ts")] }, async (run) => {
    const sleepers = Array.from({ length: 5 }, () => run.submit("sleep", 300));
    const closer = run.submit("selfclose", null);
    await run.settled([closer, ...sleepers]);
    assertCrashed(run, closer, /^worker 1 crashed: the worker exited/);
    assertDone(run, sleepers);
    // Pinned on the closer at once (it said so before closing): one crash, nobody on probation.
    assert.deepEqual(run.events.map((e) => [e.failed, e.requeued.length]), [[[closer], 5]]);
  });
});

Deno.test("a crash caused by a task that has already returned fails nobody: the tasks on the worker run again", async () => {
  await withPool({ tasks: [CRASH, SLEEP] }, async (run) => {
    const leaver = run.submit("crash", { leave: 200 });
    const sleepers = Array.from({ length: 5 }, () => run.submit("sleep", 500));
    await run.settled([leaver, ...sleepers]);
    assertDone(run, [leaver, ...sleepers]);
    assert.deepEqual(run.events.map((e) => [e.reason, e.failed, e.requeued.length]), [
      ["boom from a timer left behind", [], 5],
    ]);
  });
});
