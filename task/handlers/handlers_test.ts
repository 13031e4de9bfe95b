import assert from "node:assert/strict";
import { InvalidDataError } from "../types.ts";
import { createRegistry } from "./mod.ts";
import { parsePhone } from "./sms.ts";
import { parseSleepMs } from "./sleep.ts";

Deno.test("sms accepts an optional + and 5-20 digits in text, a JSON string or {phone}", () => {
  assert.equal(parsePhone("13800138000"), "13800138000");
  assert.equal(parsePhone("+86 138-0013-8000"), "+8613800138000");
  assert.equal(parsePhone({ phone: "12345" }), "12345");
  for (const bad of ["1234", "1".repeat(21), "12345a", "++12345", "", 13800138000, null, ["1"]]) {
    assert.throws(() => parsePhone(bad), InvalidDataError, JSON.stringify(bad));
  }
});

Deno.test("sms reads a number typed with a Chinese input method: full-width digits, ＋, －, ideographic spaces", () => {
  assert.equal(parsePhone("１３８００１３８０００"), "13800138000");
  assert.equal(parsePhone("＋８６　１３８　００１３　８０００"), "+8613800138000");
  assert.equal(parsePhone("＋86 138－0013－8000"), "+8613800138000");
  assert.equal(parsePhone({ phone: "\u3000１２３４５\u3000" }), "12345");
  // Still refused: too few digits, letters (full-width ones too), two pluses.
  for (const bad of ["１２３４", "１２３４５ａ", "＋＋12345"]) {
    assert.throws(() => parsePhone(bad), InvalidDataError, JSON.stringify(bad));
  }
});

Deno.test("sleep takes 0 to one hour of whole milliseconds", () => {
  assert.equal(parseSleepMs("250"), 250);
  assert.equal(parseSleepMs(0), 0);
  assert.equal(parseSleepMs({ ms: 10 }), 10);
  for (const bad of [-1, 1.5, "soon", 3_600_001, null]) assert.throws(() => parseSleepMs(bad), InvalidDataError);
});

Deno.test("the registry holds the built-ins and refuses broken modules with the module's name", async () => {
  const r = await createRegistry({ smsDelayMs: 1 });
  assert.deepEqual([...r.keys()], ["sms", "echo", "sleep"]);
  await assert.rejects(
    createRegistry({ smsDelayMs: 1, modules: ["file:///nonexistent/handlers.ts"] }),
    /cannot load handler module file:\/\/\/nonexistent\/handlers\.ts/,
  );
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/m.ts`, "export const handlers = 1;");
    await assert.rejects(
      createRegistry({ smsDelayMs: 1, modules: [`file://${dir}/m.ts`] }),
      /must export "handlers", an array/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
