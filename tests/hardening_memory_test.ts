/**
 * Hardening C: a worker's memory is watched, ArrayBuffers included (the heap limit does not bound
 * them). A worker over `--worker-heap` is replaced; the task that used the memory fails, the
 * others complete. And a handler that ignores the abort of its timeout while its worker's event
 * loop turns has its worker replaced. Through real worker threads; the RSS is this process's.
 *
 * @module
 */
import assert from "node:assert/strict";
import { ABANDON_GRACE_MS } from "../task/pool.ts";
import { moduleTask, type PoolRun, SLEEP, withPool } from "./hardening_pool.ts";

const MiB = 1024 * 1024;
const HOG = moduleTask("hog", "hardening_hog.ts");

function rssMiB(): number {
  return Math.round(Deno.memoryUsage().rss / MiB);
}

/** Samples this process's RSS until `stop` resolves; past `ceiling` MiB, calls `abort` (a safety valve). */
async function peakRss(stop: Promise<unknown>, ceiling: number, abort: () => void): Promise<number> {
  let peak = rssMiB();
  let done = false;
  stop.finally(() => (done = true));
  while (!done) {
    peak = Math.max(peak, rssMiB());
    if (peak > ceiling) {
      abort();
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return peak;
}

function outcomeOf(run: PoolRun, id: number) {
  const all = run.outcomes.get(id) ?? [];
  assert.equal(all.length, 1, `task ${id} settled once: ${JSON.stringify(all)}`);
  return all[0];
}

Deno.test("a handler that piles up ArrayBuffers: its worker is replaced within seconds, the RSS stays bounded, the other tasks complete", async () => {
  await withPool({ tasks: [HOG, SLEEP], workerHeap: 64 * MiB }, async (run) => {
    const before = rssMiB();
    const hog = run.submit("hog", null);
    const sleepers = Array.from({ length: 4 }, () => run.submit("sleep", 300));
    const t0 = performance.now();
    let valve = false;
    const all = run.settled([hog, ...sleepers], 20_000);
    // Without the watch the hog takes 1.6 GB a second, for ever: stop it before the machine suffers.
    const peak = await peakRss(all, before + 3000, () => {
      valve = true;
      run.pool.close(0);
    });
    assert.ok(!valve, `the RSS went over ${before + 3000} MiB: the worker was not replaced`);
    await all;
    const ms = Math.round(performance.now() - t0);
    const o = outcomeOf(run, hog);
    assert.ok(!o.ok && o.code === "worker_crashed", JSON.stringify(o));
    assert.match(o.message, /^worker 1 used \d+(\.\d)? MiB, over --worker-heap 64 MiB; replaced/);
    for (const id of sleepers) assert.ok(outcomeOf(run, id).ok, `sleeper ${id} completed`);
    // First crash: five suspects that nothing tells apart — all run again on probation, one at a
    // time; the hog, running again, is replaced again, and fails. The sleepers finish.
    assert.ok(run.events.length >= 2, JSON.stringify(run.events));
    for (const e of run.events) {
      assert.match(e.reason, /^it used .* \(heap and ArrayBuffers\), over --worker-heap 64 MiB$/);
    }
    assert.deepEqual(run.events.at(-1)!.failed, [hog]);
    const after = rssMiB();
    console.log(
      `hog replaced: RSS ${before} MiB before, peak ${peak} MiB, ${after} MiB after; all settled in ${ms} ms; ${run.events.length} replacements`,
    );
    assert.ok(peak - before < 1200, `peak RSS ${peak} MiB, ${before} MiB before`);
  });
});

Deno.test("a handler that ignores the abort of its timeout while its event loop turns: its worker is replaced", async () => {
  const IGNORE = moduleTask("ignore", "hardening_ignore_abort.ts");
  await withPool({ tasks: [IGNORE, SLEEP], taskTimeoutMs: 300 }, async (run) => {
    const stubborn = run.submit("ignore", null);
    const sleeper = run.submit("sleep", 200);
    await run.settled([stubborn, sleeper]);
    const o = outcomeOf(run, stubborn);
    assert.ok(!o.ok && o.code === "timeout", JSON.stringify(o));
    assert.ok(outcomeOf(run, sleeper).ok);
    const deadline = Date.now() + ABANDON_GRACE_MS + 5000;
    while (run.events.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(run.events.map((e) => [e.kind, e.worker, e.requeued]), [["killed", 1, []]]);
    assert.match(run.events[0].reason, /^a task's handler went on running 5s after its timeout aborted its signal$/);
    const after = run.submit("sleep", 10);
    await run.settled([after]);
    assert.ok(outcomeOf(run, after).ok);
    assert.equal(run.pool.stats()[0].restarts, 1);
  });
});
