import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { acceptedRow, endedRow, Journal, SCHEMA_VERSION } from "./journal.ts";

/** Runs `fn` with a fresh directory, removed afterwards. */
const inTempDir = (fn: (dir: string) => Promise<void> | void) => async () => {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
};

Deno.test(
  "journal: ids go on after the highest ever issued, even when every row was swept",
  inTempDir((dir) => {
    const path = `${dir}/j.db`;
    let j = Journal.open(path, "full");
    const ids = [1, 2, 3, 4, 5];
    j.write({
      accepted: ids.flatMap((id) => acceptedRow({ id, task: "echo", data: id, format: "text", attempts: 0 })),
      attempts: [],
      ended: [],
    });
    j.write({ accepted: [], attempts: [], ended: ids.flatMap((id) => endedRow(id, "done", 1, id, undefined)) });
    j.sweep(Date.now() + 1000, 0); // everything finished before "later": all rows go
    j.close();
    j = Journal.open(path, "full");
    const loaded = j.load(0);
    j.close();
    assert.deepEqual([loaded.unfinished.length, loaded.finished.length, loaded.maxId], [0, 0, 5]);
  }),
);

Deno.test(
  "journal: a version-1 file is migrated on open; its unfinished and finished tasks are kept",
  inTempDir((dir) => {
    const path = `${dir}/v1.db`;
    const db = new DatabaseSync(path);
    db.exec(`CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta VALUES ('schema_version', '1');
    CREATE TABLE tasks (
      id INTEGER PRIMARY KEY, task TEXT NOT NULL, data TEXT NOT NULL, format TEXT NOT NULL, tag TEXT,
      state TEXT NOT NULL, attempts INTEGER NOT NULL, interrupted INTEGER NOT NULL DEFAULT 0, result TEXT, error TEXT,
      accepted_at INTEGER NOT NULL, finished_at INTEGER);
    CREATE INDEX tasks_unfinished ON tasks (state) WHERE state = 'queued';
    INSERT INTO tasks VALUES (1, 'echo', '"a"', 'text', NULL, 'done', 1, 0, '"a"', NULL, 1, ${Date.now()});
    INSERT INTO tasks VALUES (2, 'sms', '"13800138000"', 'json', '"t2"', 'queued', 1, 0, NULL, NULL, 2, NULL);`);
    db.close();
    const j = Journal.open(path, "full");
    const { unfinished, finished, maxId } = j.load(0);
    j.close();
    assert.equal(maxId, 2);
    assert.deepEqual(finished.map((t) => [t.id, t.state, t.result]), [[1, "done", "a"]]);
    assert.deepEqual(unfinished.map((t) => [t.id, t.task, t.data, t.tag, t.attempts, t.interrupted]), [
      [2, "sms", "13800138000", "t2", 1, 1],
    ]);
    const after = new DatabaseSync(path);
    const version = after.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as { value: string };
    const states = after.prepare("SELECT id, state FROM tasks ORDER BY id").all();
    after.close();
    assert.equal(Number(version.value), SCHEMA_VERSION);
    assert.deepEqual(states.map((r) => [r.id, r.state]), [[1, "done"], [2, "queued"]]);
  }),
);

Deno.test(
  "journal: batches of any size are written whole (multi-row statements of 128, 64, … rows)",
  inTempDir((dir) => {
    const path = `${dir}/j.db`;
    const j = Journal.open(path, "full");
    const ids = Array.from({ length: 300 }, (_, i) => i + 1); // 128 + 128 + 32 + 8 + 4
    j.write({
      accepted: ids.flatMap((id) => acceptedRow({ id, task: "echo", data: `d${id}`, format: "text", attempts: 0 })),
      attempts: [],
      ended: [],
    });
    const ended = ids.slice(0, 77); // 64 + 8 + 4 + 1
    j.write({ accepted: [], attempts: [], ended: ended.flatMap((id) => endedRow(id, "done", 1, `r${id}`, undefined)) });
    const loaded = j.load(0);
    j.close();
    assert.deepEqual(loaded.unfinished.map((t) => t.id), ids.slice(77));
    assert.deepEqual(loaded.unfinished.map((t) => t.data), ids.slice(77).map((id) => `d${id}`));
    assert.deepEqual(loaded.finished.map((t) => [t.id, t.result]), ended.map((id) => [id, `r${id}`]));
  }),
);
