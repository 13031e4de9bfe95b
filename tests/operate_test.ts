/**
 * Failed tasks you can act on, and tasks you can stop: `/tasks`, `/retry`, `/discard`, `/cancel`,
 * through real sockets, real workers, a real journal across a restart.
 */
import assert from "node:assert/strict";
import { FIXTURE_HANDLERS, LineClient, spawnServe, startServer } from "./helpers.ts";

Deno.test("/tasks failed lists a failure with its data and error; /retry runs it again under a new, linked id", async () => {
  const server = await startServer({ modules: [FIXTURE_HANDLERS] });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send('{"task":"fail","data":"ok-later","id":"a"}');
    assert.match(await c.next(), /"type":"accepted".*"task_id":1/);
    assert.match(await c.next(), /"type":"failed".*"task_id":1.*ok-later/);
    await c.send("/tasks failed");
    const listed = JSON.parse((await c.next()).slice("TASKS ".length));
    assert.deepEqual(listed.map((t: { id: number; task: string; data: string }) => [t.id, t.task, t.data]), [
      [1, "fail", "ok-later"],
    ]);
    assert.equal(listed[0].error.code, "handler_error");
    await c.send("/retry 1");
    assert.equal(await c.next(), "ACCEPTED 2 retry of task 1");
    assert.match(await c.next(), /^FAILED 2 handler_error ok-later/, "the same data ran again (it fails the same way)");
    await c.send('{"cmd":"status","task_id":1}', "/retry 1", "/tasks failed 5");
    assert.match(await c.next(), /"state":"failed".*"retried_as":2/);
    assert.equal(await c.next(), "ERROR conflict task 1 was retried already, as task 2");
    const after = JSON.parse((await c.next()).slice("TASKS ".length));
    assert.deepEqual(after.map((t: { id: number; retry_of?: number }) => [t.id, t.retry_of]), [[2, 1]]);
    await c.send("/discard 2", "/tasks failed", "/status 2", "/discard 999");
    assert.deepEqual(await c.take(4), [
      "OK discarded 2",
      "TASKS []",
      "STATUS 2 unknown",
      "ERROR not_found no task 999 has been accepted by this server (the last is 2)",
    ]);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("/cancel: a queued task and a running one end FAILED cancelled to their own client; a done one cannot be", async () => {
  const server = await startServer({ workers: 1, concurrency: 1, modules: [FIXTURE_HANDLERS] });
  const owner = await LineClient.connect(server.addr.port);
  const admin = await LineClient.connect(server.addr.port);
  try {
    await owner.send("/task slow 30000", "/task slow 30000", "/task echo hi");
    assert.deepEqual(await owner.take(3), [
      "ACCEPTED 1 slow task queued",
      "ACCEPTED 2 slow task queued",
      "ACCEPTED 3 echo queued",
    ]);
    await admin.send("/tasks running", "/tasks queued");
    assert.match(await admin.next(), /^TASKS \[\{"id":1,"task":"slow","state":"running"/);
    assert.match(await admin.next(), /^TASKS \[\{"id":2,.*\},\{"id":3,/);
    await admin.send("/cancel 2");
    assert.equal(await admin.next(), "OK cancelled 2");
    assert.match(await owner.next(), /^FAILED 2 cancelled cancelled by 127\.0\.0\.1:\d+ \(connection 2\)$/);
    // A running task stops at once, not after its 30 s (next() gives up after 10 s).
    await admin.send('{"cmd":"cancel","task_id":1,"id":"c1"}');
    assert.equal(await admin.next(), '{"type":"ok","id":"c1","task_id":1,"state":"cancelled"}');
    assert.match(await owner.next(), /^FAILED 1 cancelled /);
    assert.equal(await owner.next(), "DONE 3 hi", "the queue goes on");
    await admin.send("/cancel 3");
    assert.equal(
      await admin.next(),
      "ERROR conflict task 3 is done already: only a queued or running task can be cancelled",
    );
    await admin.send("/tasks failed");
    assert.match(
      await admin.next(),
      /"id":1,.*"code":"cancelled"/,
      "a cancelled task can be retried like a failed one",
    );
  } finally {
    await owner.close();
    await admin.close();
    await server.shutdown(5000);
  }
});

Deno.test("with --journal, failed tasks and their data survive a restart: listed, retried, discarded", async () => {
  const dir = await Deno.makeTempDir();
  const args = ["--journal", `${dir}/j.db`, "--module", FIXTURE_HANDLERS, "--result-ttl", "1s"];
  try {
    let server = await spawnServe(args);
    let c = await LineClient.connect(server.port);
    await c.send("/task fail boom-1", "/task fail boom-2");
    await c.take(4);
    await c.close();
    server.child.kill("SIGTERM");
    await server.exited();
    await new Promise((r) => setTimeout(r, 1100)); // past --result-ttl: only --keep-failed keeps them
    server = await spawnServe(args);
    c = await LineClient.connect(server.port);
    try {
      await c.send("/tasks failed");
      const listed = JSON.parse((await c.next()).slice("TASKS ".length));
      assert.deepEqual(listed.map((t: { id: number; data: string }) => [t.id, t.data]), [[2, "boom-2"], [1, "boom-1"]]);
      await c.send("/retry 1", "/discard 2");
      assert.deepEqual(await c.take(3), [
        "ACCEPTED 3 retry of task 1",
        "OK discarded 2",
        "FAILED 3 handler_error boom-1",
      ]);
    } finally {
      await c.close();
      server.child.kill("SIGTERM");
      await server.exited();
    }
    server = await spawnServe(args);
    c = await LineClient.connect(server.port);
    try {
      await c.send("/tasks failed");
      const listed = JSON.parse((await c.next()).slice("TASKS ".length));
      assert.deepEqual(listed.map((t: { id: number }) => t.id), [3], "1 was retried (as 3), 2 discarded");
    } finally {
      await c.close();
      server.child.kill("SIGTERM");
      await server.exited();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("/cancel during a retry's backoff: the task ends cancelled, once, and never runs again", async () => {
  // A backoff of 0.75–1.5 s: long enough to cancel in, short enough that a retry left armed would run below.
  const server = await startServer({ modules: [FIXTURE_HANDLERS], retries: 2, retryBackoffMs: 1500 });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send("/task flaky 99"); // fails every attempt below 99
    assert.equal(await c.next(), "ACCEPTED 1 flaky task queued");
    assert.match(await c.next(), /^PROGRESS 1 0 attempt 1 of 3 failed .*; retrying in/);
    await c.send("/cancel 1");
    assert.equal(await c.next(), "OK cancelled 1");
    assert.match(await c.next(), /^FAILED 1 cancelled /);
    await new Promise((r) => setTimeout(r, 2500)); // past the backoff
    await c.send('{"cmd":"status","task_id":1}');
    const status = JSON.parse(await c.next()); // the next line: no PROGRESS or reply of a second run came
    assert.equal(status.state, "failed", JSON.stringify(status));
    assert.equal(status.error?.code, "cancelled", JSON.stringify(status));
    assert.equal(status.attempts, 1, "one run");
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("/cancel of a running task with retries left: it ends cancelled, and is not retried", async () => {
  const server = await startServer({ modules: [FIXTURE_HANDLERS], retries: 2, retryBackoffMs: 10 });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send("/task slow 30000");
    assert.equal(await c.next(), "ACCEPTED 1 slow task queued");
    await c.send("/tasks running");
    assert.match(await c.next(), /^TASKS \[\{"id":1,"task":"slow","state":"running"/);
    await c.send("/cancel 1");
    assert.equal(await c.next(), "OK cancelled 1");
    assert.match(await c.next(), /^FAILED 1 cancelled /);
    await new Promise((r) => setTimeout(r, 500)); // many times the 10 ms backoff
    await c.send('{"cmd":"status","task_id":1}');
    const status = JSON.parse(await c.next());
    assert.equal(status.state, "failed", JSON.stringify(status));
    assert.equal(status.attempts, 1, "one run: a cancelled task is never retried");
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});
