/**
 * One journal file: the SQLite database behind `serve --journal FILE` (the policy — when to commit,
 * what to recover — lives in `../journal.ts`). Every accepted task is written to a SQLite file
 * (Deno's built-in `node:sqlite`) before its `ACCEPTED` is sent, and its end (result or error,
 * attempts) before its `DONE`/`FAILED`. On start, unfinished tasks are queued again and finished
 * ones stay queryable.
 *
 * Group commit: {@linkcode Journal.write} writes a batch of accepts, attempt counts and ends as a
 * few multi-row statements in one transaction, with one fsync. The server runs this class in the
 * journal's own thread (`journal_worker.ts`), fed by `journal_client.ts`.
 *
 * Layout (schema version 2): two append-mostly tables, `accepted` (one row per accepted task) and
 * `ended` (one row per finished task), and a view `tasks` that joins them for people and tools
 * (`sqlite3 journal.db "SELECT state, COUNT(*) FROM tasks GROUP BY state"`). Ending a task is an
 * INSERT at the end of `ended`, not an UPDATE of a row and an index in the middle of `tasks`:
 * measured, 187k vs 115–140k tasks/s through the journal alone (version 1 did the UPDATE; a
 * version-1 file is migrated on open).
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import type { Tag } from "../../protocol.ts";
import { checkWal } from "./wal.ts";
import type { AcceptedTask, RecoveredTask } from "../store.ts";

/** The schema version this code writes; a newer file is refused. */
export const SCHEMA_VERSION = 5;

const SCHEMA = `
  CREATE TABLE IF NOT EXISTS accepted (
    id INTEGER PRIMARY KEY, task TEXT NOT NULL, data TEXT NOT NULL, format TEXT NOT NULL, tag TEXT,
    attempts INTEGER NOT NULL, interrupted INTEGER NOT NULL DEFAULT 0, accepted_at INTEGER NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0, run_at INTEGER, unique_key TEXT, started INTEGER);
  CREATE TABLE IF NOT EXISTS ended (
    id INTEGER PRIMARY KEY, state TEXT NOT NULL, attempts INTEGER NOT NULL, result TEXT, error TEXT,
    finished_at INTEGER NOT NULL);
  CREATE TABLE IF NOT EXISTS started (id INTEGER PRIMARY KEY, attempt INTEGER NOT NULL);
  CREATE VIEW IF NOT EXISTS tasks AS
    SELECT a.id, a.task, a.data, a.format, a.tag, COALESCE(e.state, 'queued') AS state,
      COALESCE(e.attempts, a.attempts) AS attempts, a.interrupted, e.result, e.error, a.accepted_at, e.finished_at,
      a.priority, a.run_at, a.unique_key
    FROM accepted a LEFT JOIN ended e ON e.id = a.id;`;

/** Version 1 kept one \`tasks\` table whose rows were updated when a task ended. */
const MIGRATE_FROM_1 = `
  CREATE TABLE accepted (
    id INTEGER PRIMARY KEY, task TEXT NOT NULL, data TEXT NOT NULL, format TEXT NOT NULL, tag TEXT,
    attempts INTEGER NOT NULL, interrupted INTEGER NOT NULL DEFAULT 0, accepted_at INTEGER NOT NULL);
  CREATE TABLE ended (
    id INTEGER PRIMARY KEY, state TEXT NOT NULL, attempts INTEGER NOT NULL, result TEXT, error TEXT,
    finished_at INTEGER NOT NULL);
  INSERT INTO accepted SELECT id, task, data, format, tag, attempts, interrupted, accepted_at FROM tasks;
  INSERT INTO ended SELECT id, state, attempts, result, error, finished_at FROM tasks WHERE state != 'queued';
  DROP TABLE tasks;`;

/** `--journal-sync`: `full` fsyncs every commit; `normal` may lose the last commits on power loss. */
export type JournalSync = "full" | "normal";

/** A journal that cannot be used: the message names the file, what is wrong and the fix. */
export class JournalError extends Error {
  override name = "JournalError";
}

/**
 * A journal that is damaged: startup stops, and the message gives the choices — restore the file
 * from a backup, or start empty with `--journal-reset` (the damaged files are kept, renamed).
 */
export class JournalDamagedError extends JournalError {
  override name = "JournalDamagedError";
}

/**
 * One accepted task as a journal row: id, task, data (JSON), format, tag (JSON or null), attempts,
 * accepted at, priority, run at (or null: at once), unique key (or null), the attempt that started
 * in the same batch (or null: see {@linkcode JournalBatch.started}).
 */
export type AcceptedRow = [
  number,
  string,
  string,
  string,
  string | null,
  number,
  number,
  number,
  number | null,
  string | null,
  number | null,
];
/** One ended task as a journal row: id, state, attempts, result (JSON or null), error (JSON or null), finished at. */
export type EndedRow = [number, string, number, string | null, string | null, number];

/** Rows per multi-row INSERT, at most: 1,408 parameters for an accepted row's 11 (SQLite allows 32,766). */
const MAX_ROWS_PER_STATEMENT = 128;

/** A value of a journal row. */
export type JournalValue = string | number | null;
/** Values in an {@linkcode AcceptedRow}. */
export const ACCEPTED_FIELDS = 11;
/** Values in an {@linkcode EndedRow}. */
export const ENDED_FIELDS = 6;

/**
 * What one group commit writes: accepts first, then starts and attempt counts, then ends. Rows are
 * flattened, one array of values per kind: a batch crosses to the journal's thread by structured
 * clone, and flat arrays of strings and numbers clone at a fraction of the cost of an array per row.
 */
export interface JournalBatch {
  /** {@linkcode AcceptedRow}s, flattened: {@linkcode ACCEPTED_FIELDS} values each. */
  accepted: JournalValue[];
  /**
   * Pairs of task id and the attempt that started, flattened: a row each in `started`. A start
   * written with its task's accept goes in the accepted row instead (its last value), and one
   * written with its task's end is not written at all (`batch.ts`).
   */
  started: number[];
  /** Pairs of task id and failed attempts so far, flattened. */
  attempts: number[];
  /** {@linkcode EndedRow}s, flattened: {@linkcode ENDED_FIELDS} values each. */
  ended: JournalValue[];
  /** Ids of finished tasks to forget now (discarded, or retried under a new id). */
  discarded?: number[];
  /** Pairs of key and JSON text: the server's own state, kept in `meta` as `state.<key>`. */
  state?: string[];
}

/**
 * The rows of an accepted task.
 *
 * @example
 * ```ts
 * import { acceptedRow } from "./file.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(
 *   acceptedRow({ id: 1, task: "sms", data: "138", format: "text", attempts: 0 }, 5),
 *   [1, "sms", '"138"', "text", null, 0, 5, 0, null, null, null],
 * );
 * ```
 */
export function acceptedRow(
  t: AcceptedTask,
  now: number = Date.now(),
): AcceptedRow {
  return [
    t.id,
    t.task,
    JSON.stringify(t.data) ?? "null",
    t.format,
    t.tag === undefined ? null : JSON.stringify(t.tag),
    t.attempts,
    now,
    t.priority ?? 0,
    t.runAt ?? null,
    t.uniqueKey ?? null,
    null,
  ];
}

/**
 * The row of an ended task; `json` is the result's JSON text, as the worker made it.
 *
 * @example
 * ```ts
 * import { endedRow } from "./file.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(endedRow(1, "done", 1, '{"ok":true}', undefined, 5), [1, "done", 1, '{"ok":true}', null, 5]);
 * ```
 */
export function endedRow(
  id: number,
  state: "done" | "failed",
  attempts: number,
  json: string | undefined,
  error: { code: string; message: string } | undefined,
  now: number = Date.now(),
): EndedRow {
  return [id, state, attempts, state === "done" ? json ?? "null" : null, error ? JSON.stringify(error) : null, now];
}

/** An accepted task as the journal keeps it: finished or not, with its priority always set. */
export interface JournalTask extends RecoveredTask {
  priority: number;
  state: "queued" | "done" | "failed";
  /** The result's JSON text. */
  json?: string;
  error?: { code: string; message: string };
  finishedAt: number;
  acceptedAt: number;
}

/** What {@linkcode Journal.load} returns. */
export interface LoadedJournal {
  unfinished: JournalTask[];
  finished: JournalTask[];
  /** The highest id ever issued. */
  maxId: number;
  /** The server's own state, by key (see {@linkcode JournalBatch.state}). */
  state: Record<string, string>;
}

function sizeOf(path: string): number | undefined {
  try {
    return Deno.statSync(path).size;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/** The choices a damaged journal leaves, in the words of the fix. */
function damaged(path: string, what: string): JournalDamagedError {
  return new JournalDamagedError(
    `journal ${path} is damaged: ${what}. Nothing was changed. Either restore ${path} (and ${path}-wal) from a backup, ` +
      `or start with --journal-reset to begin an empty journal (the damaged files are kept as ${path}.damaged-<time>)`,
  );
}

/**
 * Renames a damaged journal's files aside (`<file>.damaged-<time>`, and its `-wal`), so that a new
 * journal can start at `path`. Returns the new name of the database file.
 */
export function setAside(path: string, now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[:.]/g, "-");
  const aside = `${path}.damaged-${stamp}`;
  for (
    const [from, to] of [
      [path, aside],
      [`${path}-wal`, `${aside}-wal`],
      [`${path}-shm`, `${aside}-shm`],
      [idsFile(path), idsFile(aside)],
    ]
  ) {
    try {
      Deno.renameSync(from, to);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return aside;
}

/**
 * The file beside a journal that says the highest task id it had issued, every 10 s and on close.
 * It lets a start see ids that went backwards — a lost log, an older copy put back — which the
 * journal alone cannot show.
 */
export function idsFile(path: string): string {
  return `${path}.ids`;
}

/** The highest id the ids file recorded, and when; `undefined` without one. */
function recordedIds(path: string): { maxId: number; at: string } | undefined {
  try {
    const v = JSON.parse(Deno.readTextFileSync(idsFile(path)));
    return typeof v?.max_id === "number" ? { maxId: v.max_id, at: String(v.at) } : undefined;
  } catch {
    return undefined; // none yet, or unreadable: it only ever adds a check
  }
}

/**
 * Checks, before SQLite touches it, what SQLite would silently accept: an empty main file (it
 * would become a new journal and ids would start again at 1), a main file missing beside its log,
 * a log that was removed after an unclean stop (`meta.state` is read later), and a log with
 * damage in its middle (SQLite stops replaying at the first bad frame and drops the rest).
 */
function checkFiles(path: string): { existed: boolean; walMissing: boolean } {
  const main = sizeOf(path);
  const wal = sizeOf(`${path}-wal`);
  if (main === 0) {
    throw damaged(
      path,
      "the file is empty (0 bytes) — asynctask never leaves a journal empty, so it was truncated or replaced",
    );
  }
  if (main === undefined && wal !== undefined && wal > 0) {
    throw damaged(path, `the database file is missing but its write-ahead log ${path}-wal is there`);
  }
  if (wal !== undefined && wal > 0) {
    const problem = checkWal(Deno.readFileSync(`${path}-wal`));
    if (problem) throw damaged(path, `its write-ahead log ${path}-wal ${problem}`);
  }
  return { existed: main !== undefined, walMissing: wal === undefined };
}

/**
 * An open journal file.
 *
 * @example
 * ```ts
 * import { acceptedRow, Journal } from "./file.ts";
 * import assert from "node:assert/strict";
 * const dir = Deno.makeTempDirSync();
 * const journal = Journal.open(`${dir}/j.db`, "full");
 * const accepted = acceptedRow({ id: 1, task: "sms", data: "13800138000", format: "text", attempts: 0 });
 * journal.write({ accepted, started: [], attempts: [], ended: [] });
 * assert.equal(journal.load(0).unfinished.length, 1);
 * journal.close();
 * Deno.removeSync(dir, { recursive: true });
 * ```
 */
export class Journal {
  readonly #db: DatabaseSync;
  /** Multi-row statements by row count, prepared on first use. */
  readonly #inserts = new Map<number, StatementSync>();
  readonly #plainInserts = new Map<number, StatementSync>();
  readonly #starts = new Map<number, StatementSync>();
  readonly #finishes = new Map<number, StatementSync>();
  readonly #doneFinishes = new Map<number, StatementSync>();
  readonly #failedFinishes = new Map<number, StatementSync>();
  readonly #failedAttempt: StatementSync;
  readonly #rememberMaxId: StatementSync;
  readonly #sweepAccepted: StatementSync;
  readonly #sweepEnded: StatementSync;
  readonly #sweepStarted: StatementSync;
  readonly #discardAccepted: StatementSync;
  readonly #setState: StatementSync;
  readonly #maxId: StatementSync;
  readonly #discardEnded: StatementSync;

  private constructor(
    readonly path: string,
    db: DatabaseSync,
    /** What the checks on opening found worth saying, short of refusing the journal. */
    readonly warnings: string[] = [],
  ) {
    this.#db = db;
    this.#failedAttempt = db.prepare("UPDATE accepted SET attempts = ? WHERE id = ?");
    this.#rememberMaxId = db.prepare(
      "INSERT OR REPLACE INTO meta (key, value) SELECT 'max_id', MAX(id) FROM accepted HAVING MAX(id) IS NOT NULL",
    );
    // Done (or failed and past --keep-failed) before ?1, or older than the newest ?2 of those that
    // succeeded; failures are kept until ?3 (--keep-failed), whatever their number.
    const doomed = `SELECT id FROM ended WHERE
      (state != 'failed' AND (finished_at < ?1 OR id <= (SELECT id FROM ended WHERE state != 'failed' ORDER BY id DESC LIMIT 1 OFFSET ?2)))
      OR (state = 'failed' AND finished_at < ?3)`;
    this.#sweepAccepted = db.prepare(`DELETE FROM accepted WHERE id IN (${doomed})`);
    this.#sweepEnded = db.prepare(`DELETE FROM ended WHERE id IN (${doomed})`);
    // A start matters only until its task ends.
    this.#sweepStarted = db.prepare("DELETE FROM started WHERE id IN (SELECT id FROM ended)");
    // Only a finished task is forgotten this way: an unfinished one stays, whatever the caller says.
    this.#discardAccepted = db.prepare(
      "DELETE FROM accepted WHERE id = ?1 AND EXISTS (SELECT 1 FROM ended WHERE id = ?1)",
    );
    this.#discardEnded = db.prepare("DELETE FROM ended WHERE id = ?");
    this.#setState = db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
    this.#maxId = db.prepare(
      "SELECT MAX(COALESCE((SELECT MAX(id) FROM accepted), 0), COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'max_id'), 0)) AS max",
    );
  }

  /**
   * Opens (or creates) the journal and takes its lock. Damage is never silent: the files are
   * checked first (see {@linkcode checkFiles}), then SQLite's `quick_check`, the `meta` table and
   * whether the last run closed the journal.
   *
   * @param reset with a damaged journal, set its files aside and start an empty one instead of failing.
   * @throws {JournalDamagedError} for a damaged journal (unless `reset`).
   * @throws {JournalError} for a file that is not a journal, a newer schema, a journal locked by
   * another server, or a file or directory that cannot be written.
   */
  static open(path: string, sync: JournalSync, reset = false): Journal {
    try {
      return Journal.#open(path, sync);
    } catch (e) {
      if (!(e instanceof JournalDamagedError) || !reset) throw e;
      setAside(path);
      return Journal.#open(path, sync);
    }
  }

  static #open(path: string, sync: JournalSync): Journal {
    const { existed, walMissing } = checkFiles(path);
    const warnings: string[] = [];
    if (!existed) {
      try {
        Deno.removeSync(idsFile(path)); // a new journal: an ids file left from an old one says nothing of it
      } catch {
        // none
      }
    }
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
    } catch (e) {
      throw new JournalError(
        `cannot open journal ${path}: ${(e as Error).message} — check that the directory exists and is writable`,
      );
    }
    try {
      db.exec(`PRAGMA busy_timeout = 0; PRAGMA locking_mode = EXCLUSIVE; PRAGMA journal_mode = WAL;
        PRAGMA synchronous = ${sync === "full" ? "FULL" : "NORMAL"}`);
      db.exec("BEGIN IMMEDIATE"); // takes the exclusive lock now, and keeps it
      if (existed) Journal.#check(db, path, walMissing, warnings);
      db.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
      const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
        | { value: string }
        | undefined;
      const version = row ? Number(row.value) : SCHEMA_VERSION;
      if (version > SCHEMA_VERSION) {
        throw new JournalError(
          `journal ${path} has schema version ${
            row!.value
          }, newer than this asynctask understands (${SCHEMA_VERSION}) — run the newer asynctask that wrote it`,
        );
      }
      if (version === 1) db.exec(MIGRATE_FROM_1);
      // Version 4 added priority and run_at to accepted (the view is made again with them).
      const columns = new Set(
        (db.prepare("PRAGMA table_info(accepted)").all() as { name: string }[]).map((c) => c.name),
      );
      if (columns.size > 0 && !columns.has("priority")) {
        db.exec(`ALTER TABLE accepted ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
          ALTER TABLE accepted ADD COLUMN run_at INTEGER; ALTER TABLE accepted ADD COLUMN unique_key TEXT;
          DROP VIEW IF EXISTS tasks;`);
      }
      // Version 5 added started: a start written with its task's accept, in the task's own row.
      if (columns.size > 0 && !columns.has("started")) db.exec("ALTER TABLE accepted ADD COLUMN started INTEGER");
      db.exec(SCHEMA);
      const setMeta = db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)");
      setMeta.run("schema_version", String(SCHEMA_VERSION));
      // "open" until close() says "closed": a later start that finds "open" knows this run did not
      // close the journal, so its write-ahead log must still be there.
      setMeta.run("state", "open");
      db.exec("COMMIT");
      // Into the main file now: a journal asynctask has opened is never an empty main file with
      // everything in its log, and the "open" mark is in the main file itself.
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    } catch (e) {
      try {
        db.close();
      } catch {
        // closing a broken handle
      }
      if (e instanceof JournalError) throw e;
      const msg = (e as Error).message;
      if (/locked|busy/i.test(msg)) {
        throw new JournalError(
          `journal ${path} is locked: another asynctask server is using it — stop that server, or give this one its own --journal`,
        );
      }
      if (/not a database/i.test(msg)) {
        throw new JournalError(`${path} is not an asynctask journal (${msg}) — point --journal at a new file`);
      }
      if (/malformed|corrupt/i.test(msg)) throw damaged(path, `SQLite reports "${msg}"`);
      if (/readonly|read-only|unable to open|disk|full/i.test(msg)) {
        throw new JournalError(
          `cannot write journal ${path}: ${msg} — check free space and that the file and its directory are writable`,
        );
      }
      throw new JournalError(`cannot use journal ${path}: ${msg}`);
    }
    return new Journal(path, db, warnings);
  }

  /** The checks of an existing journal, inside the opening transaction. */
  static #check(db: DatabaseSync, path: string, walMissing: boolean, warnings: string[]): void {
    const problems = (db.prepare("PRAGMA quick_check(5)").all() as { quick_check: string }[])
      .map((r) => r.quick_check).filter((r) => r !== "ok");
    if (problems.length > 0) throw damaged(path, `SQLite's integrity check found: ${problems.join("; ")}`);
    const tables = new Set(
      (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((r) =>
        r.name
      ),
    );
    if (tables.size === 0) return; // an empty database: a new journal
    if (!tables.has("meta")) {
      throw new JournalError(
        `${path} is not an asynctask journal (it has tables, but no meta table) — point --journal at a new file`,
      );
    }
    const meta = new Map(
      (db.prepare("SELECT key, value FROM meta").all() as { key: string; value: string }[]).map((r) => [
        r.key,
        r.value,
      ]),
    );
    if (!meta.has("schema_version")) throw damaged(path, "its meta table has lost the schema version");
    if (tables.has("accepted")) {
      const { max } = db.prepare(
        "SELECT MAX(COALESCE((SELECT MAX(id) FROM accepted), 0), COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'max_id'), 0)) AS max",
      ).get() as { max: number };
      const recorded = recordedIds(path);
      if (recorded && Number(max) < recorded.maxId) {
        throw damaged(
          path,
          `its task ids went backwards: the highest id in it is ${max}, but ${recorded.maxId} had been issued (${
            idsFile(path)
          }, ${recorded.at}) — its write-ahead log was lost, or an older copy was put in its place; tasks after id ${max} are gone`,
        );
      }
    }
    if (meta.get("state") === "open" && walMissing) {
      // Either its log was deleted (what it held is lost), or another SQLite client (sqlite3, a
      // backup tool) opened and closed the file since, which moves the log into it and removes it
      // (nothing is lost). The file cannot tell which: say so, and go on.
      warnings.push(
        `the last server stopped without closing journal ${path}, and its write-ahead log ${path}-wal is not there: if it was deleted, tasks recorded since the last checkpoint are lost; if another program (sqlite3, a backup) opened the journal since, nothing is lost`,
      );
    }
  }

  /**
   * Every task that was accepted and has not finished, every finished one since `since`, and
   * every failed one since `failedSince` (kept for a retry, `--keep-failed`). A task that was running when the server stopped (its start is recorded, and it had not failed
   * that attempt) counts one more interruption; a queued one does not.
   */
  load(since: number, failedSince: number = since): LoadedJournal {
    this.#begin();
    // Its start is in its own row (written with its accept) or in started (written later).
    const running = `SELECT a.id FROM accepted a LEFT JOIN started s ON s.id = a.id
      WHERE MAX(COALESCE(a.started, 0), COALESCE(s.attempt, 0)) > a.attempts AND a.id NOT IN (SELECT id FROM ended)`;
    const wasRunning = new Set(
      (this.#db.prepare(running).all() as { id: number }[]).map((r) => Number(r.id)),
    );
    this.#db.exec(`UPDATE accepted SET interrupted = interrupted + 1 WHERE id IN (${running})`);
    // They are queued again now: should the server stop before they start, they were not running.
    this.#db.exec("DELETE FROM started WHERE id NOT IN (SELECT id FROM ended)");
    this.#db.exec("UPDATE accepted SET started = NULL WHERE started IS NOT NULL AND id NOT IN (SELECT id FROM ended)");
    this.#commit();
    const rows = this.#db.prepare(
      "SELECT * FROM tasks WHERE state = 'queued' OR finished_at >= ? OR (state = 'failed' AND finished_at >= ?) ORDER BY id",
    ).all(since, failedSince) as Record<string, unknown>[];
    const tasks = rows.map((r): JournalTask => ({
      id: Number(r.id),
      task: String(r.task),
      data: JSON.parse(String(r.data)),
      format: r.format === "json" ? "json" : "text",
      ...(r.tag != null ? { tag: JSON.parse(String(r.tag)) as Tag } : {}),
      attempts: Number(r.attempts),
      interrupted: Number(r.interrupted),
      wasRunning: wasRunning.has(Number(r.id)),
      priority: Number(r.priority ?? 0),
      ...(r.run_at != null ? { runAt: Number(r.run_at) } : {}),
      ...(r.unique_key != null ? { uniqueKey: String(r.unique_key) } : {}),
      state: r.state === "done" ? "done" : r.state === "failed" ? "failed" : "queued",
      ...(r.result != null ? { json: String(r.result) } : {}),
      ...(r.error != null ? { error: JSON.parse(String(r.error)) } : {}),
      finishedAt: Number(r.finished_at ?? 0),
      acceptedAt: Number(r.accepted_at ?? 0),
    }));
    // The highest id ever issued: the rows may have been swept, the id must not come back.
    const max = this.#db.prepare(
      "SELECT MAX(COALESCE((SELECT MAX(id) FROM accepted), 0), COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'max_id'), 0)) AS max",
    ).get() as { max: number | null };
    const state: Record<string, string> = {};
    for (const r of this.#db.prepare("SELECT key, value FROM meta WHERE key LIKE 'state.%'").all()) {
      state[String(r.key).slice("state.".length)] = String(r.value);
    }
    return {
      state,
      unfinished: tasks.filter((t) => t.state === "queued"),
      finished: tasks.filter((t) => t.state !== "queued"),
      maxId: Number(max.max ?? 0),
    };
  }

  /**
   * Writes a batch in one transaction — accepts first, then starts and attempt counts, then ends —
   * and commits it: on disk when this returns.
   */
  write(batch: JournalBatch): void {
    this.#begin();
    this.#writeAccepted(batch.accepted);
    this.#writeRows(
      batch.started,
      2,
      this.#starts,
      (n) => `INSERT OR REPLACE INTO started (id, attempt) VALUES ${Array(n).fill("(?, ?)").join(", ")}`,
    );
    const attempts = batch.attempts;
    for (let i = 0; i < attempts.length; i += 2) this.#failedAttempt.run(attempts[i + 1], attempts[i]);
    this.#writeEnded(batch.ended);
    const state = batch.state ?? [];
    for (let i = 0; i < state.length; i += 2) this.#setState.run(`state.${state[i]}`, state[i + 1]);
    for (const id of batch.discarded ?? []) {
      this.#discardAccepted.run(id);
      this.#discardEnded.run(id);
    }
    this.#commit();
  }

  /**
   * Accepted rows. A plain task's (no tag, no retry yet, priority 0, at once, no unique key: all
   * of them under a load of plain submissions) goes by a statement that has those five values as
   * constants: 6 parameters a row instead of 11. Binding is most of what an insert costs here
   * (`node:sqlite`, measured: ~80 ns a parameter; 2.40 against 3.06 µs per task for batches of
   * accepts and ends written this way). Numbered parameters (one `?1` for the batch's time) were
   * slower still: 7.3 µs.
   */
  #writeAccepted(rows: JournalValue[]): void {
    const plain: JournalValue[] = [];
    const other: JournalValue[] = [];
    for (let i = 0; i < rows.length; i += ACCEPTED_FIELDS) {
      // id, task, data, format, tag, attempts, accepted at, priority, run at, unique key, started
      if (
        rows[i + 4] === null && rows[i + 5] === 0 && rows[i + 7] === 0 && rows[i + 8] === null && rows[i + 9] === null
      ) {
        plain.push(rows[i], rows[i + 1], rows[i + 2], rows[i + 3], rows[i + 6], rows[i + 10]);
      } else {
        for (let k = 0; k < ACCEPTED_FIELDS; k++) other.push(rows[i + k]);
      }
    }
    this.#writeRows(
      plain,
      6,
      this.#plainInserts,
      (n) =>
        `INSERT INTO accepted (id, task, data, format, attempts, accepted_at, started) VALUES ${
          Array(n).fill("(?, ?, ?, ?, 0, ?, ?)").join(", ")
        }`,
    );
    this.#writeRows(
      other,
      ACCEPTED_FIELDS,
      this.#inserts,
      (n) =>
        `INSERT INTO accepted (id, task, data, format, tag, attempts, accepted_at, priority, run_at, unique_key, started) VALUES ${
          Array(n).fill("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)").join(", ")
        }`,
    );
  }

  /**
   * Ended rows, with the state and the absent result or error as constants: 4 parameters a row
   * instead of 6 (see {@linkcode Journal.#writeAccepted}). Written in runs, in their order: OR
   * REPLACE, because a task ends once, and should a bug end one twice, the journal keeps the last
   * end rather than failing the commit (which stops the server).
   */
  #writeEnded(rows: JournalValue[]): void {
    const sql = (row: string) => (n: number) =>
      `INSERT OR REPLACE INTO ended (id, state, attempts, result, error, finished_at) VALUES ${
        Array(n).fill(row).join(", ")
      }`;
    let run: JournalValue[] = [];
    let kind: "done" | "failed" | "other" | undefined;
    const flush = () => {
      if (kind === "done") this.#writeRows(run, 4, this.#doneFinishes, sql("(?, 'done', ?, ?, NULL, ?)"));
      else if (kind === "failed") this.#writeRows(run, 4, this.#failedFinishes, sql("(?, 'failed', ?, NULL, ?, ?)"));
      else if (kind === "other") this.#writeRows(run, ENDED_FIELDS, this.#finishes, sql("(?, ?, ?, ?, ?, ?)"));
      run = [];
    };
    for (let i = 0; i < rows.length; i += ENDED_FIELDS) {
      // id, state, attempts, result, error, finished at
      const next = rows[i + 1] === "done" && rows[i + 4] === null
        ? "done"
        : rows[i + 1] === "failed" && rows[i + 3] === null
        ? "failed"
        : "other";
      if (next !== kind) {
        flush();
        kind = next;
      }
      if (kind === "done") run.push(rows[i], rows[i + 2], rows[i + 3], rows[i + 5]);
      else if (kind === "failed") run.push(rows[i], rows[i + 2], rows[i + 4], rows[i + 5]);
      else for (let k = 0; k < ENDED_FIELDS; k++) run.push(rows[i + k]);
    }
    flush();
  }

  /**
   * Writes flattened rows of `fields` values with multi-row statements of 128, 64, …, 1 rows:
   * eight statements per kind of row, each prepared once (preparing one per batch size meant up to 200
   * preparations of statements with hundreds of parameters in a server's first seconds).
   */
  #writeRows(
    values: JournalValue[],
    fields: number,
    cache: Map<number, StatementSync>,
    sql: (n: number) => string,
  ): void {
    let at = 0;
    while (at < values.length) {
      const left = (values.length - at) / fields;
      const rows = left >= MAX_ROWS_PER_STATEMENT ? MAX_ROWS_PER_STATEMENT : 2 ** Math.floor(Math.log2(left));
      let stmt = cache.get(rows);
      if (!stmt) cache.set(rows, stmt = this.#db.prepare(sql(rows)));
      stmt.run(...values.slice(at, at += rows * fields));
    }
  }

  /**
   * Forgets tasks that ended before `before` (ms since the epoch), and all but the newest `keep`
   * that succeeded; failures until `failedBefore` (`--keep-failed`).
   */
  sweep(before: number, keep: number, failedBefore: number = before): void {
    this.#begin();
    // Remember the highest id first: after a sweep of everything, ids must still go on from it.
    this.#rememberMaxId.run();
    this.#sweepAccepted.run(before, keep, failedBefore);
    this.#sweepEnded.run(before, keep, failedBefore);
    this.#sweepStarted.run();
    this.#commit();
    this.#recordIds();
  }

  /** Writes the highest id issued so far to the ids file (atomically: a new file, renamed over). */
  #recordIds(): void {
    const { max } = this.#maxId.get() as { max: number };
    const file = idsFile(this.path);
    try {
      Deno.writeTextFileSync(
        `${file}.tmp`,
        JSON.stringify({ max_id: Number(max), at: new Date().toISOString() }) + "\n",
      );
      Deno.renameSync(`${file}.tmp`, file);
    } catch {
      // The ids file only adds a check at start; the journal itself is what must be written.
    }
  }

  /** Marks the journal closed, checkpoints it into the main file and closes it. */
  close(): void {
    try {
      this.#db.exec("INSERT OR REPLACE INTO meta (key, value) VALUES ('state', 'closed')");
      this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      this.#recordIds();
    } finally {
      this.#db.close();
    }
  }

  #begin(): void {
    this.#db.exec("BEGIN");
  }

  #commit(): void {
    this.#db.exec("COMMIT");
  }
}
