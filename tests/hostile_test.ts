/**
 * Hostile and broken clients through a real socket: too many connections, silent connections,
 * clients that never read, deep JSON. Each gets a clear reply (where it can still be told), and
 * the server stays healthy for everyone else.
 */
import assert from "node:assert/strict";
import { eventually, LineClient, startServer } from "./helpers.ts";

Deno.test("--max-conns: one connection too many gets ERROR too_many_connections and is closed", async () => {
  const server = await startServer({ maxConns: 2 });
  const a = await LineClient.connect(server.addr.port);
  const b = await LineClient.connect(server.addr.port);
  const c = await LineClient.connect(server.addr.port);
  try {
    assert.equal(
      await c.next(),
      "ERROR too_many_connections the server has its maximum of 2 connections (--max-conns); retry later",
    );
    await c.closedByServer();
    await a.send("/ping");
    assert.equal(await a.next(), "PONG");
    await b.close();
    await eventually("the server to see the close", () => server.stats().connections < 2);
    const d = await LineClient.connect(server.addr.port);
    await d.send("/ping");
    assert.equal(await d.next(), "PONG", "room again once one closed");
    await d.close();
  } finally {
    await Promise.all([a.close(), b.close(), c.close()]);
    await server.shutdown(5000);
  }
});

Deno.test("--idle-timeout: a silent connection is told, then closed; one waiting for a result is not idle", async () => {
  const server = await startServer({ idleTimeoutMs: 300 });
  const silent = await LineClient.connect(server.addr.port);
  const waiting = await LineClient.connect(server.addr.port);
  try {
    await waiting.send("/task sleep 700");
    assert.equal(await waiting.next(), "ACCEPTED 1 sleeping 700 ms");
    assert.equal(await silent.next(), "ERROR idle_timeout no request for 300ms (--idle-timeout); closing");
    await silent.closedByServer();
    assert.equal(await waiting.next(), 'DONE 1 {"slept_ms":700}', "not closed while its task ran");
    assert.match(await waiting.next(), /^ERROR idle_timeout/, "idle again after its result");
  } finally {
    await Promise.all([silent.close(), waiting.close()]);
    await server.shutdown(5000);
  }
});

Deno.test("--max-output: a client that never reads is cut off; its tasks finish and stay in /status", async () => {
  const server = await startServer({ maxOutput: 64 * 1024, defaultTask: "echo" });
  const greedy = await Deno.connect({ hostname: "127.0.0.1", port: server.addr.port });
  try {
    // Pipeline far more reply bytes than the kernel's buffers and --max-output hold, never reading.
    const line = "x".repeat(1000) + "\n";
    const chunk = new TextEncoder().encode(line.repeat(100));
    let sent = 0;
    try {
      for (let i = 0; i < 200; i++) {
        await Promise.race([
          greedy.write(chunk),
          new Promise((_, reject) => setTimeout(() => reject(new Error("write blocked")), 2000)),
        ]);
        sent += 100;
      }
    } catch {
      // the server closed us, or our own writes blocked: either way we stop
    }
    const deadline = Date.now() + 10_000;
    while (server.stats().connections > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(server.stats().connections, 0, "the non-reading connection was closed");
    const accepted = server.stats().accepted;
    assert.ok(accepted > 0 && accepted <= sent);
    const other = await LineClient.connect(server.addr.port);
    try {
      while (server.stats().done + server.stats().failed < accepted) await new Promise((r) => setTimeout(r, 20));
      await other.send(`/status ${accepted}`);
      assert.equal(await other.next(), `STATUS ${accepted} done ${"x".repeat(1000)}`);
    } finally {
      await other.close();
    }
  } finally {
    try {
      greedy.close();
    } catch {
      // closed
    }
    await server.shutdown(5000);
  }
});

Deno.test("deeply nested JSON and huge numbers get a clear ERROR; the server stays healthy", async () => {
  const server = await startServer({ defaultTask: "echo" });
  const c = await LineClient.connect(server.addr.port);
  try {
    await c.send('{"data":' + "[".repeat(200_000) + "]".repeat(200_000) + "}");
    assert.equal(
      await c.next(),
      '{"type":"error","error":{"code":"bad_request","message":"the request nests deeper than 64 levels"}}',
    );
    await c.send('{"cmd":"status","task_id":1e300}', "/status 99999999999999999999", '{"task":"sleep","data":1e400}');
    assert.match(await c.next(), /"code":"bad_request","message":"\\"task_id\\" must be a positive whole number"/);
    assert.match(await c.next(), /^ERROR bad_request usage: \/status <task_id>/);
    assert.match(await c.next(), /"code":"invalid_data","message":"\\"data\\" holds a number too large/);
    // Not turned into null on the way through: refused before any handler sees it.
    await c.send('{"task":"echo","data":{"a":[1,-1e999999]}}');
    assert.match(await c.next(), /"code":"invalid_data".*1e999999/);
    await c.send("/ping");
    assert.equal(await c.next(), "PONG");
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});
