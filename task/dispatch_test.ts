import assert from "node:assert/strict";
import { connectionSlot, pickSlot } from "./dispatch.ts";

Deno.test("least-busy picks the emptiest slot with room, or none", () => {
  const cursor = { next: 0 };
  assert.equal(pickSlot("least-busy", [2, 0, 1], 3, cursor), 1);
  assert.equal(pickSlot("least-busy", [3, 3], 3, cursor), -1);
});

Deno.test("round-robin takes turns and skips full slots", () => {
  const cursor = { next: 0 };
  const slots = [0, 5, 0];
  assert.deepEqual([0, 1, 2].map(() => pickSlot("round-robin", slots, 5, cursor)), [0, 2, 0]);
});

Deno.test("connection mode maps a connection to one slot", () => {
  assert.equal(connectionSlot(9, 4), connectionSlot(9, 4));
  assert.equal(connectionSlot(5, 4), 1);
});
