/**
 * The task pool through a real server and real worker threads: concurrency (the 40-SMS scene of Swoole's example),
 * each dispatch mode, a full queue, recycling, and a crashing worker.
 */
import assert from "node:assert/strict";
import { FIXTURE_HANDLERS, LineClient, startServer } from "./helpers.ts";
import type { ServerStats, TaskServer } from "../server/mod.ts";

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

Deno.test("the scene of Swoole's example: 40 SMS sends from 40 clients all run at once, and all 40 are DONE", async () => {
  // Swoole's example has 4 blocking task workers, which run 4 at a time (50 s for 40 sends of 5 s); here every send
  // is in flight together. Proved by the running count, not by a clock.
  const server = await startServer({ smsDelayMs: 1500 });
  const clients = await Promise.all(Array.from({ length: 40 }, () => LineClient.connect(server.addr.port)));
  try {
    const t0 = performance.now();
    await Promise.all(clients.map((c, i) => c.send(`+86 138 0000 ${String(i).padStart(4, "0")}`)));
    for (const c of clients) assert.match(await c.next(), /^ACCEPTED \d+ sending SMS to \+861380000\d{4}/);
    let peak = 0;
    await until(
      "40 running",
      () => (peak = Math.max(peak, server.stats().running)) === 40 || clients.every((c) => c.lines.length === 2),
    );
    assert.equal(peak, 40, "all 40 sends were in flight at the same time");
    for (const c of clients) assert.match(await c.next(), /^DONE \d+ \{"phone":"\+861380000\d{4}","sent_at":/);
    console.log(`40 SMS sends of 1.5 s: all done after ${Math.round(performance.now() - t0)} ms`);
    const stats = server.stats();
    assert.equal(stats.done, 40);
    assert.deepEqual(stats.workers.map((w) => w.done), [10, 10, 10, 10], "least-busy spread them evenly");
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await server.shutdown(5000);
  }
});

/** Sends tasks as JSON and returns the worker each one ran on, in task id order. */
async function workersOf(server: TaskServer, perClient: string[][]): Promise<number[][]> {
  const clients = await Promise.all(perClient.map(() => LineClient.connect(server.addr.port)));
  try {
    const result: number[][] = [];
    for (const [i, c] of clients.entries()) {
      await c.send(...perClient[i]);
      const lines = (await c.take(perClient[i].length * 2)).map((l) => JSON.parse(l));
      const done = lines.filter((l) => l.type === "done").sort((a, b) => a.task_id - b.task_id);
      assert.equal(done.length, perClient[i].length, JSON.stringify(lines));
      result.push(done.map((d) => d.worker));
    }
    return result;
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

const sleepJson = (ms: number) => JSON.stringify({ task: "sleep", data: ms });

Deno.test("dispatch least-busy: tasks sent together spread over all workers", async () => {
  const server = await startServer({ dispatch: "least-busy" });
  try {
    const [workers] = await workersOf(server, [Array.from({ length: 8 }, () => sleepJson(200))]);
    assert.deepEqual([...workers].sort(), [1, 1, 2, 2, 3, 3, 4, 4]);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("dispatch round-robin: each task goes to the next worker in turn", async () => {
  const server = await startServer({ dispatch: "round-robin" });
  try {
    const [workers] = await workersOf(server, [Array.from({ length: 8 }, () => sleepJson(20))]);
    assert.deepEqual(workers, [1, 2, 3, 4, 1, 2, 3, 4]);
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("dispatch connection: one connection's tasks always run on the same worker (Swoole's dispatch_mode 2)", async () => {
  const server = await startServer({ dispatch: "connection" });
  try {
    const batches = Array.from({ length: 4 }, () => Array.from({ length: 6 }, () => sleepJson(10)));
    const workers = await workersOf(server, batches);
    for (const w of workers) assert.equal(new Set(w).size, 1, `one worker per connection, got ${w}`);
    assert.equal(new Set(workers.map((w) => w[0])).size, 4, "four connections, four different workers");
  } finally {
    await server.shutdown(5000);
  }
});

Deno.test("queue_full: refused requests queue nothing, every accepted task still completes", async () => {
  const server = await startServer({ workers: 1, concurrency: 1, queueSize: 3 });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send(...Array.from({ length: 10 }, () => "/task sleep 50"));
    const immediate = await c.take(10);
    const accepted = immediate.filter((l) => l.startsWith("ACCEPTED"));
    const refused = immediate.filter((l) => l.startsWith("ERROR"));
    assert.equal(accepted.length, 4, "one running + three queued");
    assert.equal(refused.length, 6);
    for (const r of refused) {
      assert.match(r, /^ERROR queue_full the queue is full \(3 tasks waiting\); nothing was queued — retry later/);
    }
    const finals = await c.take(4);
    assert.deepEqual(finals.sort(), [1, 2, 3, 4].map((id) => `DONE ${id} {"slept_ms":50}`));
    const stats: ServerStats = server.stats();
    assert.deepEqual([stats.accepted, stats.refused, stats.done, stats.queued, stats.running], [4, 6, 4, 0, 0]);
    // Room again once the queue drained.
    await c.send("/task echo again");
    assert.deepEqual(await c.take(2), ["ACCEPTED 5 echo queued", "DONE 5 again"]);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("recycling: with max_request 4, as in Swoole's example, workers are replaced and nothing is lost", async () => {
  const server = await startServer({ workers: 2, maxTasksPerWorker: 4 });
  const c = await LineClient.connect(server.addr.port);
  try {
    const n = 60;
    await c.send(...Array.from({ length: n }, (_, i) => (i % 3 === 0 ? "/task sleep 5" : `/task echo ${i}`)));
    const lines = await c.take(2 * n, 30_000);
    assert.equal(lines.filter((l) => l.startsWith("ACCEPTED")).length, n);
    const done = lines.filter((l) => l.startsWith("DONE"));
    assert.equal(done.length, n, "every accepted task finished");
    assert.equal(new Set(done.map((l) => l.split(" ")[1])).size, n, "each exactly once");
    const stats = server.stats();
    assert.equal(stats.done, n);
    assert.equal(stats.failed, 0);
    for (const w of stats.workers) assert.equal(w.restarts, Math.floor(w.done / 4), "one new worker per 4 tasks");
    assert.ok(stats.workers.every((w) => w.restarts > 0));
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("a crashing worker fails only its own tasks with worker_crashed; the server and other tasks go on", async () => {
  const server = await startServer({ workers: 2, dispatch: "round-robin", modules: [FIXTURE_HANDLERS] });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send("/task crash now", "/task sleep 100");
    assert.deepEqual(await c.take(2), ["ACCEPTED 1 crash task queued", "ACCEPTED 2 sleeping 100 ms"]);
    const finals = (await c.take(2)).sort();
    assert.match(finals[1], /^FAILED 1 worker_crashed worker 1 crashed: .*boom from a timer/);
    assert.equal(finals[0], 'DONE 2 {"slept_ms":100}');
    await c.send("/task echo after", "/task echo after");
    const after = await c.take(4);
    assert.equal(after.filter((l) => l === "DONE 3 after" || l === "DONE 4 after").length, 2, after.join("\n"));
    const stats = server.stats();
    assert.equal(stats.workers[0].restarts, 1);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("messages to and from workers are batched: pipelined tasks travel many to a message", async () => {
  const server = await startServer({ defaultTask: "echo" });
  const c = await LineClient.connect(server.addr.port);
  try {
    const n = 2000;
    await c.send(...Array.from({ length: n }, (_, i) => `t${i}`));
    const lines = await c.take(2 * n, 30_000);
    assert.equal(lines.filter((l) => l.startsWith("DONE")).length, n);
    const { to_workers, from_workers } = server.stats().worker_messages;
    const init = 4; // one init message per worker
    assert.ok(to_workers - init <= n / 10, `${n} tasks went out in ${to_workers - init} messages`);
    assert.ok(from_workers <= n / 10, `${n} outcomes came back in ${from_workers} messages`);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("/stats shows each worker's memory, heap and ArrayBuffers, as its last report (every 2 s)", async () => {
  const server = await startServer({ workers: 2 });
  try {
    let workers = server.stats().workers;
    for (let i = 0; i < 100 && workers.some((w) => w.memory_bytes === 0); i++) {
      await new Promise((r) => setTimeout(r, 50));
      workers = server.stats().workers;
    }
    for (const w of workers) assert.ok(w.memory_bytes > 1024 * 1024, `worker ${w.id}: ${w.memory_bytes} bytes`);
  } finally {
    await server.shutdown(5000);
  }
});
