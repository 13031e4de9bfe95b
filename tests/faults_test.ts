/**
 * Never lose an accepted task: handlers that throw, time out, never yield, crash, close or exhaust
 * their worker, and retries — through a real server and real worker threads.
 */
import assert from "node:assert/strict";
import { eventually, FIXTURE_HANDLERS, LineClient, startServer } from "./helpers.ts";
import { retryDelay } from "../server/mod.ts";
import type { ServeOptions } from "../server/mod.ts";

async function session(
  opts: Partial<ServeOptions>,
  fn: (c: LineClient, stats: () => ReturnType<Awaited<ReturnType<typeof startServer>>["stats"]>) => Promise<void>,
) {
  const server = await startServer({ modules: [FIXTURE_HANDLERS], ...opts });
  const c = await LineClient.connect(server.addr.port);
  try {
    await fn(c, () => server.stats());
  } finally {
    await c.close();
    await server.shutdown(10_000);
  }
}

const json = (line: string) => JSON.parse(line);

Deno.test("timeout: a slow handler's signal is aborted; the task ends FAILED timeout; its worker lives on", async () => {
  await session({ workers: 1, taskTimeoutMs: 300 }, async (c, stats) => {
    await c.send('{"task":"slow","data":60000,"id":"s"}');
    assert.equal(json(await c.next()).type, "accepted");
    const failed = json(await c.next());
    assert.deepEqual([failed.type, failed.id, failed.error.code, failed.attempts], ["failed", "s", "timeout", 1]);
    assert.match(failed.error.message, /the task ran longer than --task-timeout 300ms/);
    await c.send("/task echo after");
    assert.deepEqual(await c.take(2), ["ACCEPTED 2 echo queued", "DONE 2 after"]);
    assert.equal(stats().workers[0].restarts, 0, "a handler that honours its signal costs no worker");
  });
});

Deno.test("a handler that never yields: FAILED timeout, its worker is replaced, the task beside it runs again", async () => {
  await session({ workers: 1, taskTimeoutMs: 300 }, async (c, stats) => {
    await c.send("/task hang x");
    assert.equal(await c.next(), "ACCEPTED 1 hang task queued");
    await new Promise((r) => setTimeout(r, 100));
    // Sent to the same worker while it is blocked: they cannot start, and are not to blame.
    await c.send("/task sleep 200", "/task echo queued behind");
    assert.deepEqual(await c.take(2), ["ACCEPTED 2 sleeping 200 ms", "ACCEPTED 3 echo queued"]);
    const lines = await c.take(5, 20_000);
    assert.equal(lines[0], "FAILED 1 timeout the task ran longer than --task-timeout 300ms");
    // The two beside it hear why they run again, then end.
    const again = lines.filter((l) => l.startsWith("PROGRESS")).sort();
    assert.deepEqual(again.map((l) => l.slice(0, 43)), [
      "PROGRESS 2 0 worker 1 was replaced under it",
      "PROGRESS 3 0 worker 1 was replaced under it",
    ]);
    assert.deepEqual(lines.filter((l) => l.startsWith("DONE")).sort(), [
      'DONE 2 {"slept_ms":200}',
      "DONE 3 queued behind",
    ]);
    assert.equal(stats().workers[0].restarts, 1, "the blocked worker was replaced");
    await c.send('{"cmd":"status","task_id":2}');
    const status = json(await c.next());
    assert.deepEqual([status.state, status.attempts], ["done", 2], "it ran again, on the new worker");
  });
});

Deno.test("retries: a flaky task succeeds on its third attempt; attempts are reported", async () => {
  await session({ retries: 3, retryBackoffMs: 20 }, async (c) => {
    await c.send('{"task":"flaky","data":2,"id":1}');
    assert.equal(json(await c.next()).type, "accepted");
    // Each failed attempt is told to the client as it happens: a PROGRESS at 0% that says why and when.
    for (const attempt of [1, 2]) {
      const p = json(await c.next());
      assert.deepEqual([p.type, p.id, p.task_id, p.progress], ["progress", 1, 1, 0]);
      assert.match(
        p.message,
        new RegExp(
          `^attempt ${attempt} of 4 failed \\(handler_error: flaky failure on attempt ${attempt}\\); retrying in \\d+ms$`,
        ),
      );
    }
    const done = json(await c.next());
    assert.deepEqual([done.type, done.result, done.attempts], ["done", { attempt: 3 }, 3]);
  });
});

Deno.test("retries run out: FAILED with the last error, after N attempts", async () => {
  await session({ retries: 1, retryBackoffMs: 10 }, async (c) => {
    await c.send("/task flaky 5", '{"task":"flaky","data":5}');
    await c.take(2);
    const lines = await c.take(4); // per task: one PROGRESS for the retry, then the final reply
    assert.equal(lines.filter((l) => /^PROGRESS 1 0 attempt 1 of 2 failed|"type":"progress"/.test(l)).length, 2);
    const finals = lines.filter((l) => l.startsWith("FAILED") || l.includes('"type":"failed"'));
    assert.ok(
      finals.includes("FAILED 1 handler_error flaky failure on attempt 2 (after 2 attempts)"),
      finals.join("\n"),
    );
    const j = json(finals.find((l) => l.startsWith("{"))!);
    assert.deepEqual([j.error.code, j.error.message, j.attempts], ["handler_error", "flaky failure on attempt 2", 2]);
  });
});

Deno.test("a permanent failure is not retried", async () => {
  await session({ retries: 5, retryBackoffMs: 10 }, async (c) => {
    await c.send("/task permanent x");
    assert.deepEqual(await c.take(2), [
      "ACCEPTED 1 permanent task queued",
      "FAILED 1 handler_error the mailbox does not exist",
    ]);
  });
});

Deno.test("a worker crash: the suspect spends a retry (or fails worker_crashed); the task beside it runs again for free", async () => {
  await session({ workers: 1, retries: 1, retryBackoffMs: 10 }, async (c, stats) => {
    await c.send("/task sleep 300", "/task crash once");
    await c.take(2);
    const lines = await c.take(4, 20_000);
    const told = lines.find((l) => l.startsWith("PROGRESS 1 "));
    assert.match(
      told ?? "",
      /^PROGRESS 1 0 worker 1 crashed under it \(.*boom.*\); the suspect is task 2; running it again/,
    );
    const retried = lines.filter((l) => l.startsWith("PROGRESS 2 "));
    assert.equal(retried.length, 1, lines.join("\n"));
    assert.match(retried[0], /^PROGRESS 2 0 attempt 1 of 2 failed \(worker_crashed: worker 1 crashed: .*boom/);
    const finals = lines.filter((l) => l.startsWith("DONE")).sort();
    assert.deepEqual(finals, ['DONE 1 {"slept_ms":300}', "DONE 2 recovered"]);
    assert.equal(stats().workers[0].restarts, 1);
  });
  await session({ workers: 1 }, async (c) => {
    await c.send("/task sleep 300", "/task crash always");
    await c.take(2);
    const lines = await c.take(3, 20_000);
    assert.match(lines.find((l) => l.startsWith("PROGRESS")) ?? "", /^PROGRESS 1 0 worker 1 crashed under it/);
    const finals = lines.filter((l) => !l.startsWith("PROGRESS")).sort();
    assert.equal(finals[0], 'DONE 1 {"slept_ms":300}', "the innocent task is not failed for its neighbour's crash");
    assert.match(finals[1], /^FAILED 2 worker_crashed worker 1 crashed: .*boom from a timer$/);
  });
});

Deno.test("a handler that closes its own worker: worker_crashed, and the worker is replaced", async () => {
  await session({ workers: 1 }, async (c, stats) => {
    await c.send("/task selfclose x");
    assert.equal(await c.next(), "ACCEPTED 1 selfclose task queued");
    assert.match(await c.next(), /^FAILED 1 worker_crashed worker 1 crashed: the worker exited/);
    await c.send("/task echo still here");
    assert.deepEqual(await c.take(2), ["ACCEPTED 2 echo queued", "DONE 2 still here"]);
    assert.equal(stats().workers[0].restarts, 1);
  });
});

Deno.test("a handler that exhausts its worker's memory does not take the server down", async () => {
  await session({ workers: 1, workerHeap: 32 * 1024 * 1024, taskTimeoutMs: 1500 }, async (c, stats) => {
    await c.send("/task oom x");
    assert.equal(await c.next(), "ACCEPTED 1 oom task queued");
    // The worker either stalls at its heap limit (then it is terminated and replaced) or V8 stops the
    // runaway script and the worker goes on; either way the task ends and the server lives.
    assert.match(await c.next(20_000), /^FAILED 1 (timeout|worker_crashed) /);
    await c.send("/ping", "/task echo alive");
    assert.deepEqual(await c.take(3, 20_000), ["PONG", "ACCEPTED 2 echo queued", "DONE 2 alive"]);
    assert.equal(stats().failed, 1);
  });
});

Deno.test("graceful stop waits for tasks in retry backoff", async () => {
  const server = await startServer({ modules: [FIXTURE_HANDLERS], retries: 2, retryBackoffMs: 200 });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send("/task flaky 1");
    assert.equal(await c.next(), "ACCEPTED 1 flaky task queued");
    await eventually("the first attempt to fail and wait for its retry", () => server.stats().retrying === 1);
    const report = await server.shutdown(5000);
    assert.equal(report.unfinished, 0);
    assert.match(await c.next(), /^PROGRESS 1 0 attempt 1 of 3 failed/);
    assert.equal(await c.next(), 'DONE 1 {"attempt":2}');
  } finally {
    await c.close();
  }
});

Deno.test("retryDelay doubles up to the cap, with jitter between half and all of it", () => {
  assert.equal(retryDelay(1, 1000, 60_000, () => 0), 500);
  assert.equal(retryDelay(1, 1000, 60_000, () => 1), 1000);
  assert.equal(retryDelay(4, 1000, 60_000, () => 1), 8000);
  assert.equal(retryDelay(20, 1000, 60_000, () => 1), 60_000);
  assert.equal(retryDelay(200, 1000, 60_000, () => 0.5), 45_000);
});

Deno.test("a worker's start-up does not count against its tasks' timeout (a worker replaced under load starts slowly)", async () => {
  const slow = new URL("./fixtures/slow_to_load.ts", import.meta.url).href;
  // The pool's workers load the module (800 ms) after the server has started listening.
  await session({ workers: 1, taskTimeoutMs: 300, modules: [FIXTURE_HANDLERS, slow] }, async (c) => {
    await c.send("/task quick hello");
    assert.deepEqual(await c.take(2, 10_000), ["ACCEPTED 1 quick task queued", "DONE 1 hello"]);
  });
});
