import assert from "node:assert/strict";
import { LineBudget } from "./line_budget.ts";

Deno.test("LineBudget: a flood writes perSecond lines a second, and one summary with the count of the rest", () => {
  const summaries: number[] = [];
  const budget = new LineBudget(20, 10_000, (held) => summaries.push(held));
  let written = 0;
  for (let ms = 0; ms < 3000; ms++) for (let i = 0; i < 10; i++) if (budget.take(ms)) written++;
  assert.equal(written, 60, "20 in each of 3 seconds");
  budget.flush();
  assert.deepEqual(summaries, [30_000 - 60]);
  budget.flush();
  assert.deepEqual(summaries, [30_000 - 60], "nothing held back since: no second summary");
});
