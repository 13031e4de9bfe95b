/**
 * Hardening A: a task's result becomes JSON text in the worker. A result that cannot (a BigInt, a
 * cycle, a throwing toJSON) or is over `--max-result` fails that task alone, with `handler_error`
 * and a message saying why; the main isolate gets only JSON text, and the worker lives on.
 * Through real worker threads.
 *
 * @module
 */
import assert from "node:assert/strict";
import { encodeResult, type Outcome } from "../task/messages.ts";
import { ECHO, moduleTask, type PoolRun, withPool } from "./hardening_pool.ts";

const RESULTS = moduleTask("results", "hardening_results.ts");

/** An outcome for a message: its start (a result can be megabytes, or not JSON at all). */
function shown(value: unknown): string {
  return Deno.inspect(value, { depth: 3, strAbbreviateSize: 200 }).slice(0, 400);
}

function only(run: PoolRun, id: number): Outcome {
  const all = run.outcomes.get(id) ?? [];
  assert.equal(all.length, 1, `task ${id} settled once: ${shown(all)}`);
  return all[0];
}

function failure(run: PoolRun, id: number): string {
  const o = only(run, id);
  assert.ok(!o.ok, `task ${id} failed: ${shown(o)}`);
  assert.equal(o.code, "handler_error");
  return o.message;
}

Deno.test("a result that cannot be JSON fails its own task with handler_error; the worker and the other tasks go on", async () => {
  await withPool({ tasks: [RESULTS, ECHO] }, async (run) => {
    const kinds = ["bigint", "nested-bigint", "cycle", "tojson-throws", "function", "plain", "undefined", "infinity"];
    const ids = kinds.map((kind) => run.submit("results", { kind }));
    const echo = run.submit("echo", "still here");
    await run.settled([...ids, echo]);
    const [bigint, nested, cycle, toJson, fn, plain, undef, inf] = ids;
    assert.equal(
      failure(run, bigint),
      "the result cannot be sent as JSON: BigInt value 10n at result — return a string or number instead",
    );
    assert.equal(
      failure(run, nested),
      "the result cannot be sent as JSON: BigInt value 10n at result.order.total — return a string or number instead",
    );
    assert.match(
      failure(run, cycle),
      /^the result cannot be sent as JSON: a cycle: result\.children\[0\]\.parent refers back to result — /,
    );
    assert.equal(
      failure(run, toJson),
      "the result cannot be sent as JSON: toJSON() of result.when threw: the clock is gone",
    );
    assert.match(failure(run, fn), /^the result cannot be sent as JSON: it is a function — return plain data/);
    // What reaches the main isolate is JSON text, made in the worker.
    const p = only(run, plain);
    assert.deepEqual({ ...p, ms: 0 }, { id: plain, attempt: 1, ok: true, json: '{"kind":"plain","ok":true}', ms: 0 });
    const u = only(run, undef);
    assert.ok(u.ok && u.json === "null", shown(u));
    const i = only(run, inf);
    assert.ok(i.ok && i.json === '{"x":null,"y":null}', shown(i));
    const e = only(run, echo);
    assert.ok(e.ok && e.json === '"still here"', shown(e));
    assert.deepEqual(run.events, [], "no worker crashed");
    assert.deepEqual(run.pool.stats().map((s) => s.restarts), [0], "the worker was never replaced");
  });
});

Deno.test("a result over --max-result fails its task with handler_error; one under it goes through", async () => {
  await withPool({ tasks: [RESULTS], maxResultBytes: 1024 * 1024 }, async (run) => {
    const over = run.submit("results", { kind: "big", mib: 3 });
    const under = run.submit("results", { kind: "plain" });
    await run.settled([over, under]);
    assert.equal(failure(run, over), "the result is 3 MiB, over the limit of 1 MiB (--max-result)");
    assert.ok(only(run, under).ok);
  });
  // The default is 8 MiB.
  await withPool({ tasks: [RESULTS] }, async (run) => {
    const over = run.submit("results", { kind: "big", mib: 9 });
    const under = run.submit("results", { kind: "big", mib: 7 });
    await run.settled([over, under]);
    assert.match(failure(run, over), /^the result is 9 MiB, over the limit of 8 MiB \(--max-result\)$/);
    const ok = only(run, under);
    assert.ok(ok.ok && ok.json.length === 7 * 1024 * 1024 + 2);
  });
});

Deno.test("encodeResult: UTF-8 bytes count against the limit; text under it passes", () => {
  assert.deepEqual(encodeResult("é".repeat(10), 22), { ok: true, json: `"${"é".repeat(10)}"` });
  const over = encodeResult("é".repeat(10), 21);
  assert.ok(!over.ok && /^the result is 22 bytes, over the limit of 21 bytes/.test(over.message));
  const getter = encodeResult({
    get x() {
      throw new Error("no");
    },
  }, 100);
  assert.ok(!getter.ok && getter.message === "the result cannot be sent as JSON: reading result.x threw: no");
});
