/**
 * Memory bounded by bytes, not only by counts: kept results (`--max-results-size`), request data
 * held by unfinished tasks (`--max-queue-bytes`), and one result (`--max-result`) that must fit a
 * connection's replies (`--max-output`). Real sockets, real workers.
 */
import assert from "node:assert/strict";
import { LineClient, runCli, startServer } from "./helpers.ts";

Deno.test("--max-results-size: the oldest results are forgotten first (/status says unknown), the newest kept", async () => {
  const server = await startServer({ defaultTask: "echo", maxResultsSize: 200 * 1024, workers: 1 });
  const c = await LineClient.connect(server.addr.port);
  try {
    const payload = "x".repeat(30_000); // ~60 KiB held per result
    await c.send(...Array.from({ length: 10 }, () => payload));
    const lines = await c.take(20);
    assert.equal(lines.filter((l) => l.startsWith("DONE")).length, 10);
    await c.send("/status 1", "/status 10");
    const [first, last] = await c.take(2);
    assert.equal(first, "STATUS 1 unknown");
    assert.ok(last.startsWith("STATUS 10 done xxxx"), last.slice(0, 40));
    assert.ok(server.stats().retained_results <= 3, `${server.stats().retained_results} kept`);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("--max-queue-bytes: a task whose data would pass it is refused queue_full; room comes back as tasks end", async () => {
  const server = await startServer({ defaultTask: "sleep", maxQueueBytes: 1000, workers: 1 });
  const c = await LineClient.connect(server.addr.port);
  try {
    // Padded with JSON whitespace: a request's size is its line's.
    const request = (ms: number, bytes: number) => `{"task":"sleep","data":${ms}${" ".repeat(bytes - 30)}}`;
    await c.send(request(300, 700));
    assert.match(await c.next(), /"type":"accepted"/);
    await c.send(request(1, 250), request(1, 600));
    assert.match(await c.next(), /"type":"accepted"/, "700 + 250 bytes fit in 1000");
    assert.match(
      await c.next(),
      /"code":"queue_full","message":"unfinished tasks hold .* of request data \(--max-queue-bytes 1000 bytes\)/,
    );
    await c.take(2); // the two DONEs
    await c.send(request(1, 600));
    assert.match(await c.next(), /"type":"accepted"/);
  } finally {
    await c.close();
    await server.shutdown(5000);
  }
});

Deno.test("--max-result above --max-output is a startup error: such a result could never reach its client", async () => {
  const r = await runCli(["serve", "--port", "0", "--max-result", "16MiB", "--max-output", "8MiB"]);
  assert.equal(r.code, 2);
  assert.match(
    r.stderr,
    /serve: --max-result 16MiB is more than --max-output 8MiB: a result that size could never be written/,
  );
});
