/**
 * The contract every {@linkcode TaskStore} keeps, run against each store: memory and the SQLite
 * journal (the Redis store of the broker will be the next). Crash cases run the store in a real
 * child process that is killed with SIGKILL.
 */
import assert from "node:assert/strict";
import { JournalStore } from "./journal.ts";
import { MemoryStore } from "./memory.ts";
import type { TaskStore } from "./store.ts";

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

  Deno.test(
    `${s.name}: after a clean close, ${s.durable ? "every state comes back as it was" : "nothing comes back"}`,
    inTempDir(async (dir) => {
      const store = await s.open(dir);
      await store.load(0);
      recordStates(store);
      await store.close();
      const again = await s.open(dir);
      const r = await again.load(0);
      await again.close();
      if (!s.durable) return assert.deepEqual(r, { unfinished: [], finished: [], maxId: 0 });
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
      if (!s.durable) return;
      assert.deepEqual(r.finished, []);
      assert.deepEqual(r.unfinished.map((t) => t.id), [1, 2, 5]);
      assert.equal(r.maxId, 5);
    }),
  );
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
