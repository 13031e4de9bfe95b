import assert from "node:assert/strict";
import { PollGate } from "./poll_gate.ts";

Deno.test("poll gate: no wait while the loop polls; one shared wait after a busy stretch; none once closed", async () => {
  const gate = await PollGate.open(10);
  try {
    assert.equal(gate.pass(), undefined, "just opened: the loop polled moments ago");
    const until = performance.now() + 30;
    while (performance.now() < until) {
      // busy: the loop cannot poll
    }
    const first = gate.pass();
    assert.ok(first instanceof Promise, "after 30 ms without a poll, readers wait");
    assert.equal(gate.pass(), first, "every reader waits for the same round trip");
    await first;
    assert.equal(gate.pass(), undefined, "the loop has just polled");
  } finally {
    gate.close();
  }
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(gate.pass(), undefined, "a closed gate never holds a reader up");
});
