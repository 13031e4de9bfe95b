import assert from "node:assert/strict";
import { configSchema } from "./schema.ts";
import { SERVE_FLAGS } from "./cli.ts";

Deno.test("asynctask.schema.json is up to date with the serve flags (run `deno task schema` after changing them)", async () => {
  const committed = JSON.parse(await Deno.readTextFile(new URL("../asynctask.schema.json", import.meta.url)));
  assert.deepEqual(committed, JSON.parse(JSON.stringify(configSchema(SERVE_FLAGS))));
  for (const f of SERVE_FLAGS) {
    if (f.name !== "help" && f.name !== "config") assert.ok(f.name in committed.properties, f.name);
  }
});
