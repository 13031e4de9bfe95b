/**
 * `--journal`: accepted means durable. Real server processes, killed with SIGKILL under pipelined
 * load, restarted on the same journal file, which is then read with node:sqlite.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { LineClient, runCli, spawnServe } from "./helpers.ts";

function rows(path: string): { id: number; state: string; attempts: number }[] {
  const db = new DatabaseSync(path);
  try {
    return db.prepare("SELECT id, state, attempts FROM tasks ORDER BY id").all() as {
      id: number;
      state: string;
      attempts: number;
    }[];
  } finally {
    db.close();
  }
}

async function waitIdle(port: number): Promise<void> {
  const c = await LineClient.connect(port);
  try {
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      await c.send("/stats");
      const s = JSON.parse((await c.next()).slice(6));
      if (s.queued === 0 && s.running === 0 && s.retrying === 0) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("the server did not finish its tasks");
  } finally {
    await c.close();
  }
}

Deno.test("kill -9 under load, several rounds: every ACCEPTED task ends done exactly once; ids never repeat", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/journal.db`;
  const accepted = new Set<number>();
  let seed = 7;
  const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  try {
    for (let round = 0; round < 4; round++) {
      const server = await spawnServe(["--journal", path, "--workers", "2", "--task", "echo"]);
      const c = await LineClient.connect(server.port);
      let sending = true;
      const sender = (async () => {
        for (let i = 0; sending; i++) {
          try {
            await c.send(
              ...Array.from({ length: 20 }, (_, k) => (k % 4 === 0 ? "/task sleep 40" : `r${round}-${i}-${k}`)),
            );
          } catch {
            return;
          }
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      await new Promise((r) => setTimeout(r, 150 + random() * 350));
      server.child.kill("SIGKILL");
      await server.exited();
      sending = false;
      await sender;
      await c.closedByServer();
      for (const line of c.lines) {
        const m = /^ACCEPTED (\d+) /.exec(line);
        if (m) {
          const id = Number(m[1]);
          assert.ok(!accepted.has(id), `task id ${id} was given out twice`);
          accepted.add(id);
        }
      }
      await c.close();
    }
    assert.ok(accepted.size > 100, `enough load: ${accepted.size} accepted`);
    // A last start runs what was left; then a graceful stop.
    const server = await spawnServe(["--journal", path, "--workers", "2", "--task", "echo"]);
    await waitIdle(server.port);
    server.child.kill("SIGTERM");
    assert.equal((await server.exited()).code, 0);

    const journal = new Map(rows(path).map((r) => [r.id, r]));
    for (const id of accepted) {
      const row = journal.get(id);
      assert.ok(row, `task ${id} was ACCEPTED but is not in the journal`);
      assert.equal(row.state, "done", `task ${id} is ${row.state}`);
    }
    assert.ok([...journal.values()].every((r) => r.state === "done"), "nothing is left unfinished");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a graceful stop then a start loses nothing and re-runs nothing; results stay in /status", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/journal.db`;
  try {
    const first = await spawnServe(["--journal", path]);
    const c = await LineClient.connect(first.port);
    await c.send(...Array.from({ length: 10 }, (_, i) => `/task sleep ${20 + i}`));
    await c.take(10);
    first.child.kill("SIGTERM"); // it finishes the 10 first
    assert.equal((await first.exited()).code, 0);
    await c.close();
    assert.deepEqual(rows(path).map((r) => [r.state, r.attempts]), Array.from({ length: 10 }, () => ["done", 1]));

    const second = await spawnServe(["--journal", path]);
    try {
      assert.match(second.log(), /0 unfinished task\(s\) queued again, 10 result\(s\) kept, task ids go on after 10/);
      const d = await LineClient.connect(second.port);
      await d.send("/status 3", "/task echo next");
      assert.deepEqual(await d.take(3), ['STATUS 3 done {"slept_ms":22}', "ACCEPTED 11 echo queued", "DONE 11 next"]);
      await d.close();
    } finally {
      second.child.kill("SIGTERM");
      assert.equal((await second.exited()).code, 0);
    }
    assert.ok(rows(path).every((r) => r.attempts === 1), "nothing ran twice");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("bad journals stop startup with a message that names the file and the fix", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const junk = `${dir}/junk.db`;
    await Deno.writeTextFile(junk, "this is not a database, it is a grocery list\n".repeat(100));
    const notDb = await runCli(["serve", "--port", "0", "--journal", junk]);
    assert.equal(notDb.code, 2);
    assert.match(notDb.stderr, new RegExp(`${junk} is not an asynctask journal .* point --journal at a new file`));

    const newer = `${dir}/newer.db`;
    const db = new DatabaseSync(newer);
    db.exec(
      "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); INSERT INTO meta VALUES ('schema_version', '99')",
    );
    db.close();
    const tooNew = await runCli(["serve", "--port", "0", "--journal", newer]);
    assert.equal(tooNew.code, 2);
    assert.match(
      tooNew.stderr,
      /has schema version 99, newer than this asynctask understands \(2\) — run the newer asynctask/,
    );

    const nowhere = await runCli(["serve", "--port", "0", "--journal", `${dir}/no/such/dir/j.db`]);
    assert.equal(nowhere.code, 2);
    assert.match(
      nowhere.stderr,
      /cannot open journal .*no\/such\/dir\/j\.db: .* check that the directory exists and is writable/,
    );

    const shared = `${dir}/shared.db`;
    const first = await spawnServe(["--journal", shared]);
    try {
      const second = await runCli(["serve", "--port", "0", "--journal", shared]);
      assert.equal(second.code, 2);
      assert.match(second.stderr, /journal .*shared\.db is locked: another asynctask server is using it/);
    } finally {
      first.child.kill("SIGTERM");
      await first.exited();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
