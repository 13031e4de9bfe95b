import assert from "node:assert/strict";
import { configurationReference } from "./reference.ts";
import { SERVE_OPTIONS } from "./options.ts";

Deno.test("docs/configuration.md is up to date with the option table (run `deno task docs` after changing it)", async () => {
  const committed = await Deno.readTextFile(new URL("../docs/configuration.md", import.meta.url));
  const fresh = configurationReference();
  // Compared after the formatter's line wrapping and table alignment are undone.
  const squash = (s: string) => s.replace(/\s*\|\s*/g, "|").replace(/-{3,}/g, "---").replace(/\s+/g, " ").trim();
  assert.ok(squash(committed) === squash(fresh), "docs/configuration.md is stale: run `deno task docs`");
  for (const o of Object.values(SERVE_OPTIONS)) {
    if (o.flag !== "help") assert.ok(committed.includes(`--${o.flag}`), o.flag);
  }
});
