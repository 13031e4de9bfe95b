/**
 * Property-based fuzzing of a real server over a real socket (fast-check, fixed seed, bounded):
 * random bytes and random protocol-shaped lines. Whatever comes in, every request line gets
 * exactly one immediate reply, in order; every ACCEPTED task exactly one final reply; and the
 * server still answers a fresh connection.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { LineClient, startServer } from "./helpers.ts";
import { parseReply } from "../client/replies.ts";

const NL = 10;

/** One request line, as bytes without its `\n`. Never `/quit` (it would end the connection). */
const line: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.uint8Array({ maxLength: 120 }),
  fc.string({ unit: "binary", maxLength: 80 }).map((s) => new TextEncoder().encode(s)),
  fc.oneof(
    fc.constantFrom(
      "/stats",
      "/ping",
      "/status 1",
      "/status 0",
      "/task echo hi",
      "/task nosuch x",
      "/auth t",
      "/",
      "{",
    ),
    fc.tuple(fc.constantFrom("/task", "/status", "/auth", "/stats", "/ping", "/task echo", "/task sleep"), fc.string())
      .map(([a, b]) => `${a} ${b}`),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.record({
      task: fc.constantFrom("echo", "sms", "sleep", "nope", ""),
      data: fc.jsonValue(),
      id: fc.oneof(fc.string(), fc.integer(), fc.double()),
      extra: fc.string(),
    }, { requiredKeys: [] }).map((r) => JSON.stringify(r)),
    fc.record({
      cmd: fc.constantFrom("stats", "ping", "status", "auth", "nope"),
      task_id: fc.oneof(fc.integer(), fc.double(), fc.string()),
      token: fc.string(),
    }, { requiredKeys: ["cmd"] }).map((r) => JSON.stringify(r)),
    fc.stringMatching(/^\+?[0-9 -]{0,25}$/),
  ).map((s) => new TextEncoder().encode(s)),
).map((bytes) => bytes.filter((b) => b !== NL))
  .filter((bytes) => !/^\s*\/quit\b/.test(new TextDecoder().decode(bytes)));

/** How many replies the server owes for a line: none for a blank one, else one. */
function expectedReplies(bytes: Uint8Array): number {
  const end = bytes.length > 0 && bytes[bytes.length - 1] === 13 ? bytes.length - 1 : bytes.length;
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(0, end)).trim() === "" ? 0 : 1;
  } catch {
    return 1; // not UTF-8: answered with ERROR bad_request
  }
}

Deno.test("fuzz: random bytes and protocol-shaped lines never break the two promises", async () => {
  const server = await startServer({ taskTimeoutMs: 300, smsDelayMs: 1, maxResults: 1000 });
  let run = 0;
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(line, { maxLength: 25 }), async (lines) => {
        const sentinel = `{"cmd":"ping","id":"sentinel-${++run}"}`;
        const c = await LineClient.connect(server.addr.port);
        try {
          const parts = [...lines.flatMap((l) => [l, new Uint8Array([NL])]), new TextEncoder().encode(sentinel + "\n")];
          const total = parts.reduce((n, p) => n + p.length, 0);
          const payload = new Uint8Array(total);
          parts.reduce((at, p) => (payload.set(p, at), at + p.length), 0);
          await c.sendRaw(payload);

          const owed = lines.reduce((n, l) => n + expectedReplies(l), 0);
          const immediate: string[] = [];
          const accepted = new Set<number>();
          const finals = new Map<number, number>();
          // Read until the sentinel's pong: every immediate reply comes before it, in order.
          while (true) {
            const reply = parseReply(await c.next(15_000));
            if (reply.type === "done" || reply.type === "failed") {
              assert.ok(accepted.has(reply.taskId!), `final reply for task ${reply.taskId} before its ACCEPTED`);
              finals.set(reply.taskId!, (finals.get(reply.taskId!) ?? 0) + 1);
              continue;
            }
            if (reply.line.includes(`"sentinel-${run}"`)) break;
            immediate.push(reply.line);
            if (reply.type === "accepted") accepted.add(reply.taskId!);
          }
          assert.equal(immediate.length, owed, `one immediate reply per request line:\n${immediate.join("\n")}`);
          for (const r of immediate) {
            assert.ok(["accepted", "error", "status", "stats", "pong", "ok"].includes(parseReply(r).type), r);
          }
          // Then every accepted task's one final reply.
          const deadline = Date.now() + 15_000;
          while ([...accepted].some((id) => !finals.has(id))) {
            assert.ok(Date.now() < deadline, "a final reply is missing");
            const reply = parseReply(await c.next(15_000));
            if (reply.type === "done" || reply.type === "failed") {
              finals.set(reply.taskId!, (finals.get(reply.taskId!) ?? 0) + 1);
            }
          }
          for (const [id, n] of finals) assert.equal(n, 1, `task ${id} got ${n} final replies`);
        } finally {
          await c.close();
        }
      }),
      { seed: 20261126, numRuns: 150 },
    );
    const fresh = await LineClient.connect(server.addr.port);
    try {
      await fresh.send("/ping");
      assert.equal(await fresh.next(), "PONG");
    } finally {
      await fresh.close();
    }
    const stats = server.stats();
    assert.equal(stats.done + stats.failed, stats.accepted, "nothing accepted was lost");
  } finally {
    await server.shutdown(5000);
  }
});
