import assert from "node:assert/strict";
import { BatchWriter, TEXT_PIECE, unpack } from "./batch.ts";

Deno.test("unpack() gives back every string of a batch whose text crossed in more than one piece", () => {
  const w = new BatchWriter();
  const big = (c: string) => c.repeat(TEXT_PIECE / 2 + 1);
  const results = [big("a"), "", big("b"), "😀\u0000\ud800", big("c")];
  results.forEach((r, i) => {
    w.accept({ id: i + 1, task: "echo", data: i, format: "text", attempts: 0 });
    w.ended(i + 1, "done", 1, r, undefined);
  });
  const batch = w.take()!;
  assert.ok(batch.text.length > 1, "more than one piece");
  assert.ok(batch.text.every((piece) => piece.length <= TEXT_PIECE || batch.text.length === 1));
  const ended = unpack(batch).ended;
  assert.deepEqual(results.map((_, i) => ended[i * 6 + 3]), results);
});
