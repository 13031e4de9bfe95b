/**
 * The contract every {@linkcode TaskStore} keeps, run against each store: memory, the SQLite
 * journal, and the broker's Redis store (on a real redis-server). Crash cases run the store in a
 * real child process that is killed with SIGKILL.
 */
import assert from "node:assert/strict";
import { JournalStore } from "./journal.ts";
import { MemoryStore } from "./memory.ts";
import type { DeliveredTask, TaskStore } from "./store.ts";
import { RedisStore, type RedisStoreOptions } from "./redis.ts";
import { parseBrokerUrl } from "./redis_url.ts";
import { HAND_BACK_SCRIPT } from "./redis_scripts.ts";
import { createClient } from "redis";
import { redisMissing, RedisServer } from "../../tests/redis_server.ts";

interface Subject {
  name: string;
  /** Opens the store kept at `dir` (the same one again after a close or a crash). */
  open(dir: string): Promise<TaskStore>;
  /** Whether what was committed is there after a restart. */
  durable: boolean;
}

const SUBJECTS: Subject[] = [
  { name: "MemoryStore", open: () => Promise.resolve(new MemoryStore()), durable: false },
  {
    name: "JournalStore",
    open: (dir) => JournalStore.open(`${dir}/journal.db`, { onFatal: (why) => assert.fail(why) }),
    durable: true,
  },
];

const inTempDir = (fn: (dir: string) => Promise<void>) => async () => {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
};

/** Records the four states a task can be left in: 1 queued, 2 running, 3 done, 4 failed, 5 waiting to retry. */
function recordStates(store: TaskStore): void {
  for (let id = 1; id <= 5; id++) {
    store.accepted({ id, task: "echo", data: { n: id }, format: id % 2 ? "text" : "json", tag: `t${id}`, attempts: 0 });
  }
  for (const id of [2, 3, 4, 5]) store.started(id, 1);
  store.ended(3, { state: "done", attempts: 1, json: '{"ok":true}' });
  store.ended(4, { state: "failed", attempts: 1, error: { code: "handler_error", message: "boom" } });
  store.attemptFailed(5, 1);
}

for (const s of SUBJECTS) {
  Deno.test(
    `${s.name}: a new store holds nothing, and commit() resolves with or without records`,
    inTempDir(async (dir) => {
      const store = await s.open(dir);
      assert.deepEqual(await store.load(0), { unfinished: [], finished: [], maxId: 0 });
      await store.commit();
      recordStates(store);
      await store.commit();
      await store.close();
    }),
  );

  // What a store keeps across a close: a store that keeps nothing (memory) has nothing to show here.
  if (s.durable) {
    Deno.test(
      `${s.name}: after a clean close, every state comes back as it was`,
      inTempDir(async (dir) => {
        const store = await s.open(dir);
        await store.load(0);
        recordStates(store);
        await store.close();
        const again = await s.open(dir);
        const r = await again.load(0);
        await again.close();
        assert.equal(r.maxId, 5);
        assert.deepEqual(
          r.unfinished.map((t) => [t.id, t.data, t.format, t.tag, t.attempts, t.wasRunning, t.interrupted]),
          [
            [1, { n: 1 }, "text", "t1", 0, false, 0],
            [2, { n: 2 }, "json", "t2", 0, true, 1],
            [5, { n: 5 }, "text", "t5", 1, false, 0],
          ],
        );
        assert.deepEqual(r.finished.map((t) => [t.id, t.state, t.attempts, t.json, t.error?.code]), [
          [3, "done", 1, '{"ok":true}', undefined],
          [4, "failed", 1, undefined, "handler_error"],
        ]);
      }),
    );

    Deno.test(
      `${s.name}: sweep() forgets finished tasks, never the unfinished, and ids still go on after the highest`,
      inTempDir(async (dir) => {
        const store = await s.open(dir);
        await store.load(0);
        recordStates(store);
        await store.commit();
        await store.sweep(Date.now() + 1000, 0);
        await store.close();
        const again = await s.open(dir);
        const r = await again.load(0);
        await again.close();
        assert.deepEqual(r.finished, []);
        assert.deepEqual(r.unfinished.map((t) => t.id), [1, 2, 5]);
        assert.equal(r.maxId, 5);
      }),
    );
  }
}

/** A child process that opens a journal store, records, and then waits to be killed. */
const CHILD = `
import { JournalStore } from "${new URL("./journal.ts", import.meta.url).href}";
const store = await JournalStore.open(Deno.args[0], { onFatal: (why) => { console.error(why); Deno.exit(3); } });
await store.load(0);
for (let id = 1; id <= 200; id++) store.accepted({ id, task: "echo", data: id, format: "text", attempts: 0 });
await store.commit();
for (let id = 1; id <= 200; id++) store.started(id, 1);
for (let id = 1; id <= 150; id++) store.ended(id, { state: "done", attempts: 1, json: String(id) });
// No commit() here: the store commits what was recorded by itself, within a turn of the event loop.
setTimeout(() => console.log("recorded"), 200);
setInterval(() => {}, 1000);
`;

Deno.test(
  "JournalStore: killed with SIGKILL, what it recorded without being asked to commit is all there",
  inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/child.ts`, CHILD);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${dir}/child.ts`, `${dir}/journal.db`],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.getReader();
    const { value } = await reader.read();
    assert.equal(new TextDecoder().decode(value).trim(), "recorded");
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel();
    const store = await JournalStore.open(`${dir}/journal.db`, { onFatal: (why) => assert.fail(why) });
    const r = await store.load(0);
    await store.close();
    assert.equal(r.finished.length, 150);
    assert.deepEqual(r.unfinished.map((t) => [t.id, t.wasRunning, t.interrupted])[0], [151, true, 1]);
    assert.equal(r.unfinished.length, 50);
    assert.equal(r.maxId, 200);
  }),
);

// ---- The shared store (the broker, on a real redis-server)
//
// Its unfinished tasks come back through its queue, not through load(): a task a stopped server
// held is claimed by another once it is not renewed for the visibility time; one it never read is
// read by the next. So the same states are recorded the way servers record them (a task is read
// from the queue before it starts), and "what comes back" is what the next server is handed.

const noRedis = await redisMissing();
const redisTest = (name: string, fn: (redis: RedisServer) => Promise<void>) =>
  Deno.test({
    name: noRedis ? `RedisStore: ${name} (skipped: ${noRedis})` : `RedisStore: ${name}`,
    ignore: noRedis !== undefined,
    fn: async () => {
      const redis = await RedisServer.start();
      try {
        await fn(redis);
      } finally {
        await redis.dispose();
      }
    },
  });

function openRedis(redis: RedisServer, extra: Partial<RedisStoreOptions> = {}): Promise<RedisStore> {
  const address = parseBrokerUrl(redis.url);
  assert.ok(address.ok);
  return RedisStore.open({ address: address.value, visibilityMs: 300, ...extra });
}

/** Consumes for `ms`, or until `n` tasks came; returns them in id order. */
async function drain(store: RedisStore, n: number, ms = 3000, capacity = 1000): Promise<DeliveredTask[]> {
  const got: DeliveredTask[] = [];
  const enough = Promise.withResolvers<void>();
  store.shared.consume({
    tasks: ["echo"],
    capacity,
    room: () => Infinity,
    deliver: (t) => {
      got.push(t);
      if (got.length >= n) enough.resolve();
    },
    ended: () => {},
    progress: () => {},
  });
  const timer = setTimeout(enough.resolve, ms);
  await enough.promise;
  clearTimeout(timer);
  return got.sort((a, b) => a.id - b.id);
}

redisTest("a new store holds nothing, and commit() resolves with or without records", async (redis) => {
  const store = await openRedis(redis);
  assert.deepEqual(await store.load(0), { unfinished: [], finished: [], maxId: 0 });
  await store.commit();
  store.accepted({ id: store.shared.nextId(), task: "echo", data: 1, format: "text", attempts: 0 });
  await store.commit();
  await store.close();
});

redisTest("after a close, every state comes back as it was: the next server is handed the unfinished", async (r) => {
  const a = await openRedis(r);
  const ids = [1, 2, 3, 4, 5].map(() => a.shared.nextId());
  // Tasks 2–5 are read by server a (its room is 4); task 1 is accepted after, and waits unread.
  for (const i of [1, 2, 3, 4]) {
    a.accepted({ id: ids[i], task: "echo", data: { n: i + 1 }, format: i % 2 ? "json" : "text", attempts: 0 });
  }
  await a.commit();
  assert.equal((await drain(a, 4, 3000, 4)).length, 4);
  a.accepted({ id: ids[0], task: "echo", data: { n: 1 }, format: "text", tag: "t1", attempts: 0 });
  for (const i of [1, 2, 3, 4]) a.started(ids[i], 1);
  a.ended(ids[2], { state: "done", attempts: 1, json: '{"ok":true}' });
  a.ended(ids[3], { state: "failed", attempts: 1, error: { code: "handler_error", message: "boom" } });
  a.attemptFailed(ids[4], 1);
  await a.close();

  const b = await openRedis(r);
  const back = await drain(b, 3);
  assert.deepEqual(back.map((t) => [t.id - ids[0] + 1, t.data, t.format, t.attempts, t.wasRunning, t.interrupted]), [
    [1, { n: 1 }, "text", 0, false, 0],
    [2, { n: 2 }, "json", 0, true, 1],
    [5, { n: 5 }, "text", 1, false, 0],
  ]);
  assert.equal(back[0].tag, "t1");
  assert.deepEqual(await b.shared.lookup(ids[2]), {
    state: "done",
    task: "echo",
    attempts: 1,
    json: '{"ok":true}',
    instance: a.instance,
  });
  assert.equal((await b.shared.lookup(ids[3]))?.error?.code, "handler_error");
  await b.close();
});

redisTest("finished tasks are forgotten after the result TTL, never the unfinished; ids still go on", async (r) => {
  const a = await openRedis(r, { resultTtlMs: 200, failedTtlMs: 200 });
  const first = a.shared.nextId();
  const second = a.shared.nextId();
  a.accepted({ id: first, task: "echo", data: 1, format: "text", attempts: 0 });
  a.accepted({ id: second, task: "echo", data: 2, format: "text", attempts: 0 });
  await a.commit();
  await drain(a, 2);
  a.started(first, 1);
  a.ended(first, { state: "done", attempts: 1, json: "1" });
  await a.close();
  await new Promise((resolve) => setTimeout(resolve, 400));
  const b = await openRedis(r);
  assert.equal(await b.shared.lookup(first), undefined);
  assert.deepEqual((await drain(b, 1)).map((t) => t.id), [second]);
  assert.ok(b.shared.nextId() > second);
  await b.close();
});

/** A child process that accepts, reads and starts 200 tasks, ends 150 without a commit, and waits to be killed. */
const REDIS_CHILD = `
import { RedisStore } from "${new URL("./redis.ts", import.meta.url).href}";
import { parseBrokerUrl } from "${new URL("./redis_url.ts", import.meta.url).href}";
const address = parseBrokerUrl(Deno.args[0]);
const store = await RedisStore.open({ address: address.value, visibilityMs: 300 });
const ids = [];
for (let i = 0; i < 200; i++) ids.push(store.shared.nextId());
for (const id of ids) store.accepted({ id, task: "echo", data: id, format: "text", attempts: 0 });
await store.commit();
let n = 0;
store.shared.consume({ tasks: ["echo"], capacity: 1000, room: () => Infinity, ended() {}, progress() {}, deliver(t) {
  store.started(t.id, 1);
  if (++n <= 150) store.ended(t.id, { state: "done", attempts: 1, json: String(t.id) });
  if (n === 200) setTimeout(() => console.log(JSON.stringify(ids)), 200);
} });
setInterval(() => {}, 1000);
`;

redisTest("killed with SIGKILL, the ends it recorded are there and the rest run again elsewhere", async (r) => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/child.ts`, REDIS_CHILD);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--config", new URL("../../deno.json", import.meta.url).pathname, `${dir}/child.ts`, r.url],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = child.stdout.getReader();
    let text = "";
    while (!text.endsWith("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    const ids = JSON.parse(text) as number[];
    child.kill("SIGKILL");
    await child.status;
    reader.releaseLock();
    await child.stdout.cancel();
    const b = await openRedis(r);
    const back = await drain(b, 50);
    assert.equal(back.length, 50);
    assert.ok(back.every((t) => t.wasRunning && t.interrupted === 1));
    for (const id of ids.slice(0, 150)) assert.equal((await b.shared.lookup(id))?.state, "done", `task ${id}`);
    await b.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

redisTest(
  "any server's lookup finds a task queued, running (its attempt and server), and ended once commit() resolved",
  async (r) => {
    const a = await openRedis(r);
    const b = await openRedis(r);
    const [queued, running] = [a.shared.nextId(), a.shared.nextId()];
    a.accepted({ id: queued, task: "echo", data: 1, format: "text", attempts: 0 });
    a.accepted({ id: running, task: "echo", data: 2, format: "text", attempts: 0 });
    await a.commit();
    assert.deepEqual(await b.shared.lookup(queued), { state: "queued", task: "echo", attempts: 0 });
    await drain(a, 2);
    a.started(running, 1);
    let seen = await b.shared.lookup(running);
    for (let i = 0; i < 50 && seen?.state !== "running"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      seen = await b.shared.lookup(running);
    }
    assert.deepEqual(seen, { state: "running", task: "echo", attempts: 1, instance: a.instance });
    // Another end's write is under way when this one is recorded: commit() waits for both.
    a.ended(queued, { state: "done", attempts: 1, json: "1" });
    await Promise.resolve();
    a.ended(running, { state: "done", attempts: 1, json: "2" });
    await a.commit();
    assert.deepEqual(await b.shared.lookup(running), {
      state: "done",
      task: "echo",
      attempts: 1,
      json: "2",
      instance: a.instance,
    });
    await a.close();
    await b.close();
  },
);

redisTest(
  "commit() resolves once the ends recorded before it are written, a failed write tried again included",
  async (r) => {
    const a = await openRedis(r);
    const id = a.shared.nextId();
    const key = `asynctask:t:${id}`;
    a.accepted({ id, task: "echo", data: 1, format: "text", attempts: 0 });
    await a.commit();
    await drain(a, 1);
    a.started(id, 1);
    await a.commit();
    await r.cli("SET", key, "in the way"); // the end's script fails on it (WRONGTYPE), and is tried again
    a.ended(id, { state: "done", attempts: 1, json: "1" });
    let resolved = false;
    const committed = a.commit().then(() => (resolved = true));
    await new Promise((resolve) => setTimeout(resolve, 800));
    assert.equal(resolved, false, "commit() resolved before the end was written");
    await r.cli("DEL", key);
    await committed;
    assert.equal(await r.cli("HEXISTS", key, "e"), "1");
    await a.close();
  },
);

redisTest("ends too large for one script call together are written in several", async (r) => {
  await r.cli("CONFIG", "SET", "proto-max-bulk-len", "12mb"); // Redis's longest argument, 512 MB by default
  const a = await openRedis(r);
  const ids = [a.shared.nextId(), a.shared.nextId(), a.shared.nextId()];
  for (const id of ids) a.accepted({ id, task: "echo", data: id, format: "text", attempts: 0 });
  await a.commit();
  await drain(a, 3);
  const result = (id: number) => JSON.stringify(`${id}:${"x".repeat(5_000_000)}`); // ~5 MB each
  for (const id of ids) a.ended(id, { state: "done", attempts: 1, json: result(id) });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<string>((resolve) => timer = setTimeout(() => resolve("still waiting after 10 s"), 10_000));
  assert.equal(await Promise.race([a.commit().then(() => "written"), late]), "written");
  clearTimeout(timer);
  for (const id of ids) assert.equal((await a.shared.lookup(id))?.json, result(id));
  await a.close();
});

redisTest("the hand-back script run twice (a reply lost, the call retried) queues its task once", async (r) => {
  const c = createClient({ url: r.url });
  await c.connect();
  try {
    const stream = "asynctask:q:echo";
    await c.sendCommand(["XGROUP", "CREATE", stream, "workers", "0", "MKSTREAM"]);
    const entry = String(await c.sendCommand(["XADD", stream, "*", "i", "7", "t", "[1]"]));
    await c.sendCommand(["XREADGROUP", "GROUP", "workers", "me", "COUNT", "1", "STREAMS", stream, ">"]);
    const args = ["0", "asynctask", "workers", "me", stream, entry, "7", "[1]", "2", "echo"];
    await c.sendCommand(["EVAL", HAND_BACK_SCRIPT, ...args]);
    await c.sendCommand(["EVAL", HAND_BACK_SCRIPT, ...args]);
    const entries = await c.sendCommand(["XRANGE", stream, "-", "+"]) as [string, string[]][];
    assert.equal(entries.length, 1, JSON.stringify(entries));
    assert.notEqual(entries[0][0], entry);
    assert.deepEqual(entries[0][1], ["i", "7", "t", "[1]", "a", "2"]);
    assert.equal(await c.sendCommand(["HGET", "asynctask:queued", "7"]), "echo");
    // An entry another server has claimed is left to it.
    const other = String(await c.sendCommand(["XADD", stream, "*", "i", "8", "t", "[2]"]));
    await c.sendCommand(["XREADGROUP", "GROUP", "workers", "someone-else", "COUNT", "1", "STREAMS", stream, ">"]);
    await c.sendCommand([
      "EVAL",
      HAND_BACK_SCRIPT,
      "0",
      "asynctask",
      "workers",
      "me",
      stream,
      other,
      "8",
      "[2]",
      "0",
      "echo",
    ]);
    assert.equal((await c.sendCommand(["XRANGE", stream, "-", "+"]) as unknown[]).length, 2, "nothing added");
  } finally {
    await c.quit();
  }
});
