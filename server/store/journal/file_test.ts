import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { acceptedRow, endedRow, Journal, JournalDamagedError, JournalError, SCHEMA_VERSION } from "./file.ts";
import { BatchWriter, unpack } from "./batch.ts";

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
      started: [],
      attempts: [],
      ended: [],
    });
    j.write({
      accepted: [],
      started: [],
      attempts: [],
      ended: ids.flatMap((id) => endedRow(id, "done", 1, String(id), undefined)),
    });
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
    assert.deepEqual(finished.map((t) => [t.id, t.state, t.json]), [[1, "done", '"a"']]);
    assert.deepEqual(unfinished.map((t) => [t.id, t.task, t.data, t.tag, t.attempts, t.interrupted]), [
      [2, "sms", "13800138000", "t2", 1, 0], // it was queued, not running: no interruption
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
      started: [],
      attempts: [],
      ended: [],
    });
    const ended = ids.slice(0, 77); // 64 + 8 + 4 + 1
    j.write({
      accepted: [],
      started: [],
      attempts: [],
      ended: ended.flatMap((id) => endedRow(id, "done", 1, JSON.stringify(`r${id}`), undefined)),
    });
    const loaded = j.load(0);
    j.close();
    assert.deepEqual(loaded.unfinished.map((t) => t.id), ids.slice(77));
    assert.deepEqual(loaded.unfinished.map((t) => t.data), ids.slice(77).map((id) => `d${id}`));
    assert.deepEqual(loaded.finished.map((t) => [t.id, t.json]), ended.map((id) => [id, `"r${id}"`]));
  }),
);

/** Writes `n` accepted echo tasks, `batch` per commit. */
function fill(j: Journal, from: number, n: number, batch = 100): void {
  for (let at = from; at < from + n; at += batch) {
    const ids = Array.from({ length: Math.min(batch, from + n - at) }, (_, i) => at + i);
    j.write({
      accepted: ids.flatMap((id) => acceptedRow({ id, task: "echo", data: `d${id}`, format: "text", attempts: 0 })),
      started: [],
      attempts: [],
      ended: [],
    });
  }
}

/** The journal's files as a crash would leave them: copied while the journal is open. */
function crashCopy(path: string, to: string): void {
  Deno.copyFileSync(path, to);
  Deno.copyFileSync(`${path}-wal`, `${to}-wal`);
}

Deno.test(
  "Journal.load() counts an interruption only for tasks that were running, and forgets their start",
  inTempDir((dir) => {
    const j = Journal.open(`${dir}/j.db`, "full");
    fill(j, 1, 4);
    // 1 running, 2 ran and failed attempt 1 (waiting to retry), 3 queued, 4 running then done.
    j.write({
      accepted: [],
      started: [1, 1, 2, 1, 4, 1],
      attempts: [2, 1],
      ended: endedRow(4, "done", 1, '"ok"', undefined),
    });
    crashCopy(`${dir}/j.db`, `${dir}/c.db`);
    j.close();
    const c = Journal.open(`${dir}/c.db`, "full");
    const first = c.load(0);
    assert.deepEqual(first.unfinished.map((t) => [t.id, t.wasRunning, t.interrupted]), [
      [1, true, 1],
      [2, false, 0],
      [3, false, 0],
    ]);
    // Stopped again before any of them started: none was running this time.
    const second = c.load(0);
    c.close();
    assert.deepEqual(second.unfinished.map((t) => [t.id, t.wasRunning, t.interrupted]), [
      [1, false, 1],
      [2, false, 0],
      [3, false, 0],
    ]);
  }),
);

Deno.test(
  "Journal.load() counts a start written with its task's accept (in the task's row) as running, once",
  inTempDir((dir) => {
    const j = Journal.open(`${dir}/j.db`, "full");
    const w = new BatchWriter();
    // 1 accepted and started in one batch, 2 accepted only, 3 accepted, started and done in one batch.
    for (const id of [1, 2, 3]) w.accept({ id, task: "echo", data: id, format: "text", attempts: 0 });
    w.started(1, 1);
    w.started(3, 1);
    w.ended(3, "done", 1, '"ok"', undefined);
    const rows = unpack(w.take()!);
    assert.deepEqual(rows.started, [], "no start needs a row of its own");
    j.write(rows);
    crashCopy(`${dir}/j.db`, `${dir}/c.db`);
    j.close();
    const c = Journal.open(`${dir}/c.db`, "full");
    const first = c.load(0);
    const second = c.load(0); // stopped again before any of them started
    c.close();
    assert.deepEqual(first.unfinished.map((t) => [t.id, t.wasRunning, t.interrupted]), [[1, true, 1], [2, false, 0]]);
    assert.deepEqual(second.unfinished.map((t) => [t.id, t.wasRunning, t.interrupted]), [[1, false, 1], [2, false, 0]]);
  }),
);

Deno.test(
  "Journal.open() refuses an empty main file, naming the file and --journal-reset",
  inTempDir((dir) => {
    const path = `${dir}/j.db`;
    const j = Journal.open(path, "full");
    fill(j, 1, 10);
    j.close();
    Deno.truncateSync(path, 0);
    assert.throws(() => Journal.open(path, "full"), (e: Error) => {
      assert.ok(e instanceof JournalDamagedError);
      assert.match(e.message, new RegExp(`journal ${path} is damaged: the file is empty`));
      assert.match(e.message, /--journal-reset/);
      return true;
    });
  }),
);

Deno.test(
  "Journal.open() warns when a journal's write-ahead log is gone after an unclean stop",
  inTempDir((dir) => {
    const j = Journal.open(`${dir}/j.db`, "full");
    fill(j, 1, 50);
    crashCopy(`${dir}/j.db`, `${dir}/c.db`);
    j.close();
    Deno.removeSync(`${dir}/c.db-wal`);
    const c = Journal.open(`${dir}/c.db`, "full");
    c.close();
    assert.match(
      c.warnings.join("\n"),
      /stopped without closing journal .*c\.db, and its write-ahead log .*c\.db-wal is not there/,
    );
    const again = Journal.open(`${dir}/c.db`, "full");
    again.close();
    assert.deepEqual(again.warnings, [], "closed cleanly this time");
  }),
);

Deno.test(
  "Journal.open() refuses a log with damage in its middle, and says how many frames it would drop",
  inTempDir((dir) => {
    const j = Journal.open(`${dir}/j.db`, "full");
    fill(j, 1, 3050, 50);
    crashCopy(`${dir}/j.db`, `${dir}/c.db`);
    j.close();
    const wal = Deno.readFileSync(`${dir}/c.db-wal`);
    wal.fill(0x5a, Math.floor(wal.length / 2), Math.floor(wal.length / 2) + 64);
    Deno.writeFileSync(`${dir}/c.db-wal`, wal);
    assert.throws(() => Journal.open(`${dir}/c.db`, "full"), /c\.db-wal is damaged at frame \d+ .* later frame/);
  }),
);

Deno.test(
  "Journal.open() takes a crash's log with a torn last frame: the committed tasks are all there",
  inTempDir((dir) => {
    const j = Journal.open(`${dir}/j.db`, "full");
    fill(j, 1, 500, 50);
    crashCopy(`${dir}/j.db`, `${dir}/c.db`);
    j.close();
    const wal = Deno.readFileSync(`${dir}/c.db-wal`);
    // Half a frame of garbage at the end: a write the crash cut short.
    Deno.writeFileSync(`${dir}/c.db-wal`, new Uint8Array([...wal, ...new Uint8Array(2000).fill(7)]));
    const c = Journal.open(`${dir}/c.db`, "full");
    assert.equal(c.load(0).unfinished.length, 500);
    c.close();
  }),
);

Deno.test(
  "Journal.open() with reset sets a damaged journal aside and starts an empty one",
  inTempDir((dir) => {
    const path = `${dir}/j.db`;
    const j = Journal.open(path, "full");
    fill(j, 1, 10);
    j.close();
    Deno.truncateSync(path, 0);
    const fresh = Journal.open(path, "full", true);
    const loaded = fresh.load(0);
    fresh.close();
    assert.deepEqual([loaded.unfinished.length, loaded.maxId], [0, 0]);
    assert.ok([...Deno.readDirSync(dir)].some((e) => e.name.startsWith("j.db.damaged-")));
  }),
);

Deno.test(
  "Journal.open() refuses a file whose pages are corrupt (quick_check), naming the file",
  inTempDir((dir) => {
    const path = `${dir}/j.db`;
    const j = Journal.open(path, "full");
    fill(j, 1, 3000, 500);
    j.close();
    const bytes = Deno.readFileSync(path);
    bytes.fill(0xff, 4096 * 3, 4096 * 3 + 200); // inside a b-tree page, past the header page
    Deno.writeFileSync(path, bytes);
    assert.throws(() => Journal.open(path, "full"), (e: Error) => {
      assert.ok(e instanceof JournalError);
      assert.match(e.message, new RegExp(path));
      return true;
    });
  }),
);

Deno.test(
  "Journal.open() refuses a journal whose meta table lost its schema version",
  inTempDir((dir) => {
    const path = `${dir}/j.db`;
    Journal.open(path, "full").close();
    const db = new DatabaseSync(path);
    db.exec("DELETE FROM meta");
    db.close();
    assert.throws(() => Journal.open(path, "full"), /lost the schema version/);
  }),
);

Deno.test(
  "Journal.open() refuses a journal whose task ids went backwards (its log lost after a crash), naming the ids file",
  inTempDir((dir) => {
    const j = Journal.open(`${dir}/j.db`, "full");
    fill(j, 1, 30);
    j.sweep(0, 1000); // records the highest id, 30, in j.db.ids
    crashCopy(`${dir}/j.db`, `${dir}/c.db`);
    Deno.copyFileSync(`${dir}/j.db.ids`, `${dir}/c.db.ids`);
    j.close();
    Deno.removeSync(`${dir}/c.db-wal`); // the 30 tasks were only in the log
    assert.throws(
      () => Journal.open(`${dir}/c.db`, "full"),
      /c\.db is damaged: its task ids went backwards: the highest id in it is 0, but 30 had been issued \(.*c\.db\.ids/,
    );
  }),
);
