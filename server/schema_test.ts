import assert from "node:assert/strict";
import { configSchema } from "./schema.ts";
import { flagSpecs } from "../cli/options.ts";
import { SERVE_OPTIONS } from "./options.ts";

const SERVE_FLAGS = flagSpecs(SERVE_OPTIONS);

Deno.test("asynctask.schema.json is up to date with the serve flags (run `deno task docs` after changing them)", async () => {
  const committed = JSON.parse(await Deno.readTextFile(new URL("../asynctask.schema.json", import.meta.url)));
  assert.deepEqual(committed, JSON.parse(JSON.stringify(configSchema(SERVE_FLAGS))));
  for (const f of SERVE_FLAGS) {
    if (!f.commandLineOnly) assert.ok(f.name in committed.properties, f.name);
  }
});

Deno.test("examples/asynctask.json passes the shipped schema; a task with a wrong key does not", async () => {
  const { Ajv2020 } = await import("ajv/dist/2020.js");
  const ajv = new Ajv2020({ strict: false });
  const check = ajv.compile(JSON.parse(await Deno.readTextFile(new URL("../asynctask.schema.json", import.meta.url))));
  const text = await Deno.readTextFile(new URL("../examples/asynctask.json", import.meta.url));
  assert.ok(check(JSON.parse(text)), ajv.errorsText(check.errors));
  const example: { tasks: { sms: Record<string, unknown> } } = JSON.parse(text);
  example.tasks.sms.url = "http://x"; // a webhook setting on a command task
  assert.equal(check(example), false);
  delete example.tasks.sms.url;
  delete example.tasks.sms.command;
  assert.equal(check(example), false, "a command task needs its command");
});
