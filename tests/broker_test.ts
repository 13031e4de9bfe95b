/**
 * The broker, end to end: real `asynctask serve` processes sharing one real `redis-server`.
 * Tasks accepted by one server run on others and their replies come back; `/status` answers from
 * any server; a server killed with SIGKILL under load, or Redis killed and restarted (AOF on),
 * loses no accepted task. Skipped, with the reason, where redis-server is not installed.
 */
import assert from "node:assert/strict";
import {
  eventually,
  LineClient,
  makeCertificates,
  opensslMissing,
  runCli,
  type ServeProcess,
  spawnServe,
  startServer,
} from "./helpers.ts";
import { freePort, redisMissing, RedisServer } from "./redis_server.ts";

const noRedis = await redisMissing();
const FIXTURE = new URL("./fixtures/broker_record.ts", import.meta.url).pathname;

/** A config with the recording task, echo and sleep. */
async function config(dir: string): Promise<string> {
  const path = `${dir}/asynctask.json`;
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      tasks: { record: { kind: "module", module: FIXTURE }, echo: { kind: "builtin" }, sleep: { kind: "builtin" } },
    }),
  );
  return path;
}

function brokerTest(name: string, fn: (redis: RedisServer, dir: string) => Promise<void>, aof?: "always") {
  Deno.test({
    name: noRedis ? `${name} (skipped: ${noRedis})` : name,
    ignore: noRedis !== undefined,
    fn: async () => {
      const redis = await RedisServer.start({ aof });
      const dir = await Deno.makeTempDir({ prefix: "asynctask-broker-" });
      try {
        await fn(redis, dir);
      } finally {
        await redis.dispose();
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  });
}

async function servers(n: number, redis: RedisServer, cfg: string, extra: string[] = []): Promise<ServeProcess[]> {
  const args = ["--broker", redis.url, "--broker-visibility", "1s", "--config", cfg, "--stats-interval", "0"];
  return await Promise.all(Array.from({ length: n }, () => spawnServe([...args, ...extra])));
}

async function stopAll(ps: ServeProcess[]): Promise<void> {
  for (const p of ps) {
    try {
      p.child.kill("SIGTERM");
    } catch {
      // gone already
    }
  }
  await Promise.all(ps.map((p) => p.exited()));
}

/** Lines of the runs file: [task id, pid of the server that ran it]. */
async function runs(file: string): Promise<[number, number][]> {
  const text = await Deno.readTextFile(file).catch(() => "");
  return text.trim().split("\n").filter(Boolean).map((l) => l.split(" ").map(Number) as [number, number]);
}

/** A request for the recording task. */
const record = (file: string, ms: number) => JSON.stringify({ task: "record", data: { file, ms } });

interface Reply {
  type: string;
  task_id?: number;
  result?: { id: number; pid: number };
  error?: { code: string; message: string };
}

/** Sends `lines` pipelined on one connection; collects the ids accepted, ended and refused until each is settled. */
async function submitAll(c: LineClient, lines: string[], timeoutMs = 60_000) {
  const accepted = new Set<number>();
  const done = new Map<number, Reply>();
  const refused: Reply[] = [];
  for (let i = 0; i < lines.length; i += 50) await c.send(...lines.slice(i, i + 50));
  const deadline = Date.now() + timeoutMs;
  while (accepted.size + refused.length < lines.length || done.size < accepted.size) {
    const r = JSON.parse(await c.next(Math.max(1, deadline - Date.now()))) as Reply;
    if (r.type === "accepted") accepted.add(r.task_id!);
    else if (r.type === "done" || r.type === "failed") done.set(r.task_id!, r);
    else if (r.type === "error") refused.push(r);
  }
  return { accepted, done, refused };
}

brokerTest(
  "broker: tasks accepted by one server run on the others, and each reply comes back to its client",
  async (redis, dir) => {
    const cfg = await config(dir);
    const ps = await servers(3, redis, cfg, ["--workers", "1", "--concurrency", "2"]);
    try {
      const file = `${dir}/runs`;
      const c = await LineClient.connect(ps[0].port);
      const lines = Array.from({ length: 30 }, () => record(file, 100));
      const { accepted, done } = await submitAll(c, lines);
      assert.equal(accepted.size, 30);
      assert.equal(done.size, 30);
      for (const [id, r] of done) assert.deepEqual([r.type, r.result?.id], ["done", id]);
      const ran = await runs(file);
      assert.equal(ran.length, 30);
      const pids = new Set(ran.map(([, pid]) => pid));
      assert.ok(pids.size >= 2, `the tasks ran on ${pids.size} server(s): ${[...pids].join(", ")}`);

      // /status of a task accepted by the first server, asked of the third.
      const [id] = [...accepted];
      const other = await LineClient.connect(ps[2].port);
      await other.send(`{"cmd":"status","task_id":${id}}`);
      const status = JSON.parse(await other.next());
      assert.equal(status.state, "done", JSON.stringify(status));
      assert.equal(status.result.id, id);
      assert.equal(typeof status.instance, "string");
      // A task this server never held is not acted on here, and the error says where to go.
      const elsewhere = ran.find(([, pid]) => pid !== ps[2].child.pid)![0];
      await other.send(`/cancel ${elsewhere}`);
      assert.equal(
        await other.next(),
        `ERROR not_found task ${elsewhere} is not on this server: with --broker, act on a task on the server that accepted or runs it (/status ${elsewhere} names it)`,
      );
      // /stats shows the cluster: the three servers, and the stream with nothing left waiting.
      await eventually("/stats to show the three servers", async () => {
        await other.send('{"cmd":"stats"}');
        const stats = JSON.parse(await other.next());
        return stats.cluster?.instances.length === 3 && stats.cluster.queues.record?.waiting === 0;
      });
      await other.close();
      await c.close();
    } finally {
      await stopAll(ps);
    }
  },
);

brokerTest("broker: a server killed with SIGKILL under pipelined load loses no accepted task", async (redis, dir) => {
  const cfg = await config(dir);
  const [front, ...back] = await servers(3, redis, cfg, ["--workers", "2", "--concurrency", "4"]);
  const file = `${dir}/runs`;
  try {
    // The first server only accepts: its own workers are paused, so the others run everything.
    const admin = await LineClient.connect(front.port);
    await admin.send('{"cmd":"pause"}');
    await admin.next();
    const c = await LineClient.connect(front.port);
    const lines = Array.from({ length: 600 }, () => record(file, 5));
    const settled = submitAll(c, lines, 90_000);
    await eventually("a third of the tasks run", async () => (await runs(file)).length >= 200);
    const victim = back[0].child.pid;
    back[0].child.kill("SIGKILL");
    const { accepted, done, refused } = await settled;
    assert.deepEqual(refused, []);
    assert.equal(accepted.size, 600);
    assert.equal(done.size, 600, `${600 - done.size} accepted task(s) never ended`);
    assert.ok([...done.values()].every((r) => r.type === "done"));
    // A task ran twice only where the killed server had run it (its end was not recorded).
    const byId = new Map<number, number[]>();
    for (const [id, pid] of await runs(file)) byId.set(id, [...byId.get(id) ?? [], pid]);
    for (const [id, pids] of byId) {
      if (pids.length > 1) assert.ok(pids.includes(victim), `task ${id} ran ${pids.length} times: ${pids.join(", ")}`);
    }
    await c.close();
    await admin.close();
  } finally {
    await stopAll([front, back[1]]);
    await back[0].exited();
  }
});

brokerTest(
  "broker: Redis killed and restarted under load (AOF always): every ACCEPTED task ends, the rest were refused store_unavailable",
  async (redis, dir) => {
    const cfg = await config(dir);
    const ps = await servers(2, redis, cfg);
    try {
      const file = `${dir}/runs`;
      const c = await LineClient.connect(ps[0].port);
      const results = { accepted: new Set<number>(), done: new Set<number>(), refused: 0, last: "", why: "" };
      const reading = (async () => {
        for (;;) {
          const r = JSON.parse(await c.next(60_000)) as Reply;
          if (r.type === "accepted" || r.type === "error") results.last = r.type;
          if (r.type === "accepted") results.accepted.add(r.task_id!);
          else if (r.type === "done") results.done.add(r.task_id!);
          else if (r.type === "error" && r.error?.code === "store_unavailable") {
            results.refused++;
            results.why = r.error.message;
          } else if (r.type === "pong") return;
          else throw new Error(`unexpected reply: ${JSON.stringify(r)}`);
        }
      })();
      let sent = 0;
      const send = async (n: number) => {
        for (let i = 0; i < n; i++, sent++) await c.send(record(file, 2));
      };
      await send(200);
      // Killed under load: with some of these tasks accepted, the rest in flight.
      await eventually("100 tasks accepted", () => results.accepted.size >= 100);
      await redis.stop("SIGKILL");
      await send(50); // refused: Redis is down
      await new Promise((r) => setTimeout(r, 500));
      await redis.restart();
      await eventually("the server to accept again", async () => {
        await send(1);
        await new Promise((r) => setTimeout(r, 100));
        return results.accepted.size + results.refused === sent && results.last === "accepted";
      }, 30_000);
      await send(200);
      await eventually(
        "every accepted task to end",
        () => results.accepted.size + results.refused === sent && results.done.size === results.accepted.size,
        60_000,
      );
      await c.send('{"cmd":"ping"}');
      await reading;
      assert.ok(results.refused > 0, "no task was refused while Redis was down");
      assert.ok(
        results.accepted.size >= 300,
        JSON.stringify({ ...results, accepted: results.accepted.size, done: results.done.size }),
      );
      for (const id of results.accepted) assert.ok(results.done.has(id), `task ${id} was accepted and never ended`);
      await c.close();
    } finally {
      await stopAll(ps);
    }
  },
  "always",
);

brokerTest("broker: two servers share one port with --reuse-port, and each answers", async (redis, dir) => {
  const cfg = await config(dir);
  const port = freePort();
  const ps = await servers(2, redis, cfg, ["--port", String(port), "--reuse-port"]);
  try {
    assert.deepEqual(ps.map((p) => p.port), [port, port]);
    const out = await runCli(["client", "--port", String(port), "--task", "echo", "--send", "a", "--send", "b"]);
    assert.equal(out.code, 0, out.stderr);
  } finally {
    await stopAll(ps);
  }
});

Deno.test({
  name: noRedis
    ? `broker: a wrong password and an unreachable Redis stop start-up with what to do (skipped: ${noRedis})`
    : "broker: a wrong password and an unreachable Redis stop start-up with what to do",
  ignore: noRedis !== undefined,
  fn: async () => {
    const redis = await RedisServer.start({ password: "right" });
    try {
      const wrong = await runCli(["serve", "--port", "0", "--broker", `redis://:wrong@127.0.0.1:${redis.port}/0`]);
      assert.equal(wrong.code, 2);
      assert.match(wrong.stderr, /refused the password/);
      assert.doesNotMatch(wrong.stderr, /wrong/);
      const none = await runCli(["serve", "--port", "0", "--broker", redis.url]);
      assert.equal(none.code, 2);
      assert.match(none.stderr, /asks for a password/);
    } finally {
      await redis.dispose();
    }
    const port = freePort();
    const down = await runCli(["serve", "--port", "0", "--broker", `redis://127.0.0.1:${port}/0`]);
    assert.equal(down.code, 2);
    assert.match(down.stderr, new RegExp(`cannot reach Redis at redis://127.0.0.1:${port}/0: connection refused`));
  },
});

const noTls = noRedis ?? await opensslMissing();
Deno.test({
  name: noTls
    ? `broker: over TLS (rediss:// with --broker-ca), tasks run and come back (skipped: ${noTls})`
    : "broker: over TLS (rediss:// with --broker-ca), tasks run and come back",
  ignore: noTls !== undefined,
  fn: async () => {
    const dir = await Deno.makeTempDir({ prefix: "asynctask-broker-tls-" });
    const certs = await makeCertificates(dir);
    const redis = await RedisServer.start({ tls: certs.paths });
    try {
      const s = await spawnServe(["--broker", redis.url, "--broker-ca", certs.paths.ca, "--stats-interval", "0"]);
      try {
        const out = await runCli(["client", "--port", String(s.port), "--task", "echo", "--send", "over tls"]);
        assert.equal(out.code, 0, out.stderr);
        assert.match(out.stdout, /DONE \d+ over tls/);
      } finally {
        s.child.kill("SIGTERM");
        await s.exited();
      }
      const tlsReuse = await runCli(
        ["serve", "--port", "0", "--tls-cert", certs.paths.cert, "--tls-key", certs.paths.key, "--reuse-port"],
      );
      assert.equal(tlsReuse.code, 2);
      assert.match(tlsReuse.stderr, /--reuse-port works with plain TCP only/);
      const untrusted = await runCli(["serve", "--port", "0", "--broker", redis.url]);
      assert.equal(untrusted.code, 2);
      assert.match(untrusted.stderr, /--broker: cannot use Redis at rediss:\/\/127\.0\.0\.1:\d+\/0: .*certificate/);
    } finally {
      await redis.dispose();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: noRedis
    ? `broker: while Redis is down, /readyz says not ready and tasks are refused store_unavailable; then both recover (skipped: ${noRedis})`
    : "broker: while Redis is down, /readyz says not ready and tasks are refused store_unavailable; then both recover",
  ignore: noRedis !== undefined,
  fn: async () => {
    const redis = await RedisServer.start();
    const server = await startServer({ broker: redis.url, http: "127.0.0.1:0", workers: 1 });
    const readyz = async () => {
      const r = await fetch(`http://127.0.0.1:${server.httpAddr!.port}/readyz`);
      return { status: r.status, body: await r.text() };
    };
    const c = await LineClient.connect(server.addr.port);
    try {
      await eventually("/readyz 200", async () => (await readyz()).status === 200);
      await redis.stop("SIGKILL");
      let down = { status: 0, body: "" };
      await eventually("/readyz 503", async () => (down = await readyz()).status === 503);
      assert.match(JSON.parse(down.body).checks.store.detail, /Redis is unreachable/);
      await c.send("/task echo while-down");
      assert.match(await c.next(), /^ERROR store_unavailable Redis cannot be reached/);
      await redis.restart();
      await eventually("/readyz 200 again", async () => (await readyz()).status === 200);
      await c.send("/task echo after");
      assert.match(await c.next(), /^ACCEPTED \d+/);
      assert.match(await c.next(), /^DONE \d+ after/);
    } finally {
      await c.close();
      await server.shutdown(1000);
      await redis.dispose();
    }
  },
});

brokerTest("broker: after Redis restarts empty, task ids still never repeat", async (redis, dir) => {
  const [s] = await servers(1, redis, await config(dir));
  try {
    const c = await LineClient.connect(s.port);
    await c.send('{"task":"echo","data":"before"}');
    assert.equal(JSON.parse(await c.next()).type, "accepted");
    assert.equal(JSON.parse(await c.next()).type, "done");
    await redis.stop("SIGKILL");
    await redis.restart(); // no persistence: the id counter starts again from 0
    // The server reconnects: a probe task is taken again (refused store_unavailable until then).
    for (let tries = 0;; tries++) {
      await c.send('{"task":"echo","data":"probe"}');
      const r = JSON.parse(await c.next());
      if (r.type === "accepted") {
        assert.notEqual(r.task_id, 1, "id 1 was issued before the restart");
        assert.equal(JSON.parse(await c.next()).type, "done");
        break;
      }
      assert.ok(tries < 150, `no task taken 15 s after Redis restarted: ${JSON.stringify(r)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // For 2.5 s after Redis restarted, until every server has said which ids it took, no server takes
    // a new block (one that used up its block would refuse tasks): the burst below needs one.
    await new Promise((r) => setTimeout(r, 2600));
    const lines = Array.from({ length: 10_100 }, (_, i) => JSON.stringify({ task: "echo", data: i }));
    const { accepted, refused } = await submitAll(c, lines, 90_000);
    assert.deepEqual(refused, []);
    assert.equal(accepted.size, 10_100, "every ACCEPTED id is new");
    assert.ok(!accepted.has(1), "id 1 was issued before the restart");
    await c.close();
  } finally {
    await stopAll([s]);
  }
});

brokerTest(
  "broker: a pause hands the tasks a server read and has not started back to the queue",
  async (redis, dir) => {
    const cfg = await config(dir);
    const [a] = await servers(1, redis, cfg, ["--workers", "1", "--concurrency", "1"]);
    const file = `${dir}/runs`;
    let b: ServeProcess | undefined;
    try {
      const c = await LineClient.connect(a.port);
      const admin = await LineClient.connect(a.port);
      for (let i = 0; i < 4; i++) await c.send(record(file, 1000));
      // a has read two (its room is 2 × 1 worker × 1) and runs one.
      await eventually("a task running on a", async () => {
        await admin.send('{"cmd":"stats"}');
        return JSON.parse(await admin.next()).running === 1;
      });
      await admin.send('{"cmd":"pause"}');
      await admin.next();
      [b] = await servers(1, redis, cfg, ["--workers", "2", "--concurrency", "2"]);
      const replies = (await c.take(8, 20_000)).map((l) => JSON.parse(l) as Reply);
      assert.equal(replies.filter((r) => r.type === "done").length, 4, "all four ended while a stayed paused");
      const pids = new Set((await runs(file)).map(([, pid]) => pid));
      assert.ok(pids.size >= 1);
      await c.close();
      await admin.close();
    } finally {
      await stopAll(b ? [a, b] : [a]);
    }
  },
);

brokerTest(
  "broker: a task Redis lost (a restart without persistence) fails store_unavailable, and a stop does not wait for it",
  async (redis, dir) => {
    const [a] = await servers(1, redis, await config(dir));
    try {
      const c = await LineClient.connect(a.port);
      await c.send('{"cmd":"pause"}');
      await c.next();
      await c.send('{"task":"echo","data":"lost"}');
      assert.equal(JSON.parse(await c.next()).type, "accepted");
      await redis.stop("SIGKILL");
      await redis.restart();
      const failed = JSON.parse(await c.next(15_000)) as Reply;
      assert.equal(failed.type, "failed");
      assert.equal(failed.error?.code, "store_unavailable");
      assert.match(failed.error!.message, /Redis lost the task/);
      // A stop that waited for it would run out its shutdown timeout and exit 1.
      a.child.kill("SIGTERM");
      assert.equal((await a.exited()).code, 0);
      await c.close();
    } finally {
      await stopAll([a]);
    }
  },
);

Deno.test("serve: a --broker that is not a Redis address, --broker with --journal, and an unreadable --broker-ca stop start-up with what to do", async () => {
  const http = await runCli(["serve", "--port", "0", "--broker", "http://127.0.0.1:6379"]);
  assert.equal(http.code, 2);
  assert.match(http.stderr, /--broker http:\/\/ is not a Redis address; write redis:\/\/host:6379\/0/);
  const db = await runCli(["serve", "--port", "0", "--broker", "redis://127.0.0.1:1/x"]);
  assert.equal(db.code, 2);
  assert.match(db.stderr, /--broker: database "x" is not a number/);
  const both = await runCli(["serve", "--port", "0", "--broker", "redis://127.0.0.1:1/0", "--journal", "j.db"]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--broker and --journal cannot be used together/);
  const ca = await runCli([
    "serve",
    "--port",
    "0",
    "--broker",
    "rediss://127.0.0.1:1/0",
    "--broker-ca",
    "/nonexistent/ca.pem",
  ]);
  assert.equal(ca.code, 2);
  assert.match(ca.stderr, /--broker-ca \/nonexistent\/ca.pem: /);
});

brokerTest(
  "broker: while Redis is down, a final reply waits for its end to be stored, other replies do not, and a stop does not hang",
  async (redis, dir) => {
    const [a] = await servers(1, redis, await config(dir), ["--shutdown-timeout", "2s"]);
    try {
      const c = await LineClient.connect(a.port);
      const ask = async (line: string) => {
        const probe = await LineClient.connect(a.port);
        await probe.send(line);
        const answer = await probe.next();
        await probe.close();
        return answer;
      };
      const quitter = await LineClient.connect(a.port);
      await c.send("/task sleep 1500");
      assert.match(await c.next(), /^ACCEPTED 1 /);
      await quitter.send("/task sleep 1500");
      assert.match(await quitter.next(), /^ACCEPTED 2 /);
      await eventually("both to run", async () => /"running":2\b/.test(await ask("/stats")));
      await redis.stop("SIGKILL"); // the tasks end while Redis is down: their ends cannot be stored
      await eventually("the tasks to end on their worker", async () => /"done":2\b/.test(await ask("/stats")));
      // The same connection still answers at once: its DONE waits aside, not in front of these.
      await c.send("/ping", "/task echo x");
      assert.equal(await c.next(), "PONG");
      assert.match(await c.next(), /^ERROR store_unavailable /);
      // A /quit does not wait for Redis: the connection closes, its final reply given up.
      await quitter.send("/quit");
      assert.match(await quitter.next(), /^BYE/);
      await quitter.closedByServer();
      await redis.restart(); // AOF on: the end is written once Redis is back, and then the DONE goes
      assert.equal(await c.next(15_000), 'DONE 1 {"slept_ms":1500}');

      // A stop while an end cannot be stored: the reply is given up after a wait, and the server exits.
      await c.send("/task sleep 1000");
      assert.match(await c.next(), /^ACCEPTED 3 /);
      await eventually("task 3 to run", async () => /^STATUS 3 running/.test(await ask("/status 3")));
      await redis.stop("SIGKILL");
      await eventually("task 3 to end on its worker", async () => /"done":3\b/.test(await ask("/stats")));
      a.child.kill("SIGTERM");
      const exited = await Promise.race([
        a.exited().then((e) => e.code),
        new Promise<"hung">((r) => setTimeout(() => r("hung"), 30_000)),
      ]);
      assert.notEqual(exited, "hung", a.log());
      assert.match(a.log(), /connection\(s\) closed with final replies unwritten/);
      await c.close();
    } finally {
      await stopAll([a]);
    }
  },
  "always",
);

brokerTest(
  "broker: a server started just after Redis restarted empty takes no id the running servers took",
  async (redis, dir) => {
    const cfg = await config(dir);
    const [b] = await servers(1, redis, cfg);
    let c: ServeProcess | undefined;
    try {
      const cb = await LineClient.connect(b.port);
      await cb.send("/task echo b1");
      assert.equal(await cb.next(), "ACCEPTED 1 echo queued");
      assert.equal(await cb.next(), "DONE 1 b1");
      await redis.stop("SIGKILL");
      await redis.restart(); // no persistence: the id counter is gone
      [c] = await servers(1, redis, cfg); // at once, before b has reconnected perhaps
      const cc = await LineClient.connect(c.port);
      await cc.send("/task echo c1");
      const accepted = /^ACCEPTED (\d+) /.exec(await cc.next());
      assert.ok(accepted && Number(accepted[1]) > 1, `a new id, above b's: ${accepted?.[0]}`);
      assert.equal(await cc.next(), `DONE ${accepted[1]} c1`, "its own result, not another task's");
      await cb.send("/task echo b2");
      const again = /^ACCEPTED (\d+) /.exec(await cb.next());
      assert.ok(again && again[1] !== accepted[1], `b's next id is not c's: ${again?.[0]}`);
      assert.equal(await cb.next(), `DONE ${again[1]} b2`);
      await cb.close();
      await cc.close();
    } finally {
      await stopAll(c ? [b, c] : [b]);
    }
  },
);

brokerTest(
  "broker: a retry of a paused server goes back to the queue with its attempts: --retries still bounds it",
  async (redis, dir) => {
    const cfg = await config(dir);
    const file = `${dir}/runs`;
    const retries = ["--retries", "2", "--retry-backoff", "1s"];
    const [a] = await servers(1, redis, cfg, retries);
    let b: ServeProcess | undefined;
    try {
      const c = await LineClient.connect(a.port);
      await c.send(JSON.stringify({ task: "record", data: { file, fail: true } }));
      assert.equal(JSON.parse(await c.next()).type, "accepted");
      assert.match(await c.next(), /"type":"progress".*attempt 1 of 3 failed/);
      await c.send('{"cmd":"pause"}'); // during the backoff: the retry goes back to the queue when it is due
      assert.equal(JSON.parse(await c.next()).type, "ok");
      [b] = await servers(1, redis, cfg, retries);
      // b's retry notices come to this client too (forwarded through Redis), then the end.
      let end = JSON.parse(await c.next(30_000)) as Reply & { message?: string };
      const notices: string[] = [];
      while (end.type === "progress") {
        notices.push(end.message ?? "");
        end = JSON.parse(await c.next(30_000));
      }
      assert.equal(end.type, "failed", JSON.stringify(end));
      assert.equal(notices.length, 1, JSON.stringify(notices));
      assert.match(notices[0], /attempt 2 of 3 failed/);
      const ran = await runs(file);
      assert.deepEqual(ran.map(([, pid]) => pid === a.child.pid ? "a" : "b"), ["a", "b", "b"], "three runs in all");
      await c.close();
    } finally {
      await stopAll(b ? [a, b] : [a]);
    }
  },
);

brokerTest(
  "broker: after Redis restarts empty, a task another server still runs is not reported lost",
  async (redis, dir) => {
    const cfg = await config(dir);
    const [a, b] = await servers(2, redis, cfg);
    try {
      const c = await LineClient.connect(a.port);
      await c.send('{"cmd":"pause"}'); // a runs nothing: b runs the task
      assert.equal(JSON.parse(await c.next()).type, "ok");
      await c.send("/task sleep 4000");
      const id = Number(/^ACCEPTED (\d+) /.exec(await c.next())?.[1]);
      await eventually("b to run it", async () => {
        await c.send(`/status ${id}`);
        return new RegExp(`^STATUS ${id} running`).test(await c.next());
      });
      await redis.stop("SIGKILL");
      await redis.restart(); // empty: the queued index and the streams are gone; b still runs the task
      assert.equal(await c.next(15_000), `DONE ${id} {"slept_ms":4000}`);
      await c.close();
    } finally {
      await stopAll([a, b]);
    }
  },
);

brokerTest(
  "broker: after Redis restarts, a paused server still takes no task (it hands back what a read brings in)",
  async (redis, dir) => {
    const cfg = await config(dir);
    const [a] = await servers(1, redis, cfg);
    const [b] = await servers(1, redis, cfg, ["--workers", "1", "--concurrency", "1"]);
    try {
      await redis.stop("SIGKILL");
      await redis.restart(); // a's reader reconnects: a new client to Redis
      const ca = await LineClient.connect(a.port);
      const cb = await LineClient.connect(b.port);
      await eventually("both servers to take tasks again", async () => {
        await ca.send("/task echo a");
        await cb.send("/task echo b");
        const [ra, rb] = [await ca.next(), await cb.next()];
        if (/^ACCEPTED/.test(ra)) await ca.next();
        if (/^ACCEPTED/.test(rb)) await cb.next();
        return /^ACCEPTED/.test(ra) && /^ACCEPTED/.test(rb);
      });
      await ca.send("/pause");
      assert.match(await ca.next(), /^OK paused/);
      for (let i = 0; i < 4; i++) await cb.send("/task sleep 300");
      const accepted = await cb.take(4);
      assert.ok(accepted.every((l) => l.startsWith("ACCEPTED")), accepted.join("\n"));
      await new Promise((r) => setTimeout(r, 1500)); // a's blocked read, if it had the room of before, has come back
      await ca.send("/tasks queued");
      assert.equal(await ca.next(), "TASKS []", "the paused server sits on no task");
      const ends = await cb.take(4, 15_000);
      assert.ok(ends.every((l) => /^DONE \d+ \{"slept_ms":300\}$/.test(l)), ends.join("\n"));
      await ca.close();
      await cb.close();
    } finally {
      await stopAll([a, b]);
    }
  },
);

brokerTest(
  "broker: a stopping server with a delayed task of its own stops reading others' tasks at once, and exits 0",
  async (redis, dir) => {
    const cfg = await config(dir);
    const [a] = await servers(1, redis, cfg, ["--workers", "1", "--concurrency", "2", "--shutdown-timeout", "8s"]);
    const [b] = await servers(1, redis, cfg);
    try {
      const ca = await LineClient.connect(a.port);
      await ca.send('{"task":"echo","data":"later","delay":"1h"}');
      assert.equal(JSON.parse(await ca.next()).type, "accepted");
      const cb = await LineClient.connect(b.port);
      await cb.send("/pause");
      assert.match(await cb.next(), /^OK paused/);
      for (let i = 0; i < 30; i++) await cb.send("/task sleep 1000"); // a takes them, four at a time
      assert.ok((await cb.take(30)).every((l) => l.startsWith("ACCEPTED")));
      a.child.kill("SIGTERM");
      // It finishes the few it holds, and reads no more: Redis keeps its delayed task, nobody waits for it here.
      const { code, log } = await a.exited();
      assert.equal(code, 0, log);
      assert.match(log, /1 delayed task\(s\) not due yet kept by the store/);
      await cb.send("/resume"); // b runs what is left, and can stop
      await ca.close();
      await cb.close();
    } finally {
      await stopAll([a, b]);
    }
  },
);

brokerTest("broker: a task handed back after Redis restarted empty still runs", async (redis, dir) => {
  const cfg = await config(dir);
  const [b] = await servers(1, redis, cfg, ["--workers", "1", "--concurrency", "1"]);
  try {
    const c = await LineClient.connect(b.port);
    await c.send("/task sleep 2000", "/task sleep 100"); // one runs, the other waits its turn here
    const ids = (await c.take(2)).map((l) => Number(/^ACCEPTED (\d+) /.exec(l)?.[1]));
    await eventually("the first to run", async () => {
      await c.send(`/status ${ids[0]}`);
      return /running/.test(await c.next());
    });
    await redis.stop("SIGKILL");
    await redis.restart(); // empty: the stream and its entries are gone
    await c.send("/pause sleep", "/resume sleep"); // the waiting one goes back to the (new) stream, and comes back
    assert.match(await c.next(), /^OK paused/);
    assert.match(await c.next(), /^OK resumed/);
    const ends = await c.take(2, 20_000);
    assert.deepEqual(
      ends.sort(),
      [`DONE ${ids[0]} {"slept_ms":2000}`, `DONE ${ids[1]} {"slept_ms":100}`].sort(),
      b.log(),
    );
    await c.close();
  } finally {
    await stopAll([b]);
  }
});
