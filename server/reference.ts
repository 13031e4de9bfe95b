/**
 * `docs/configuration.md`, generated from the option table (`options.ts`): one row per option with
 * its flag, config key, environment variable, default and help, grouped as `--help` would read
 * them. `deno task docs` writes it (and the config schema); a test fails when the committed file
 * no longer matches the table.
 *
 * @module
 */
import { formatDuration, formatSize } from "../cli/units.ts";
import type { OptionSpec } from "../cli/options.ts";
import { SERVE_OPTIONS } from "./options.ts";

function shown(o: OptionSpec): string {
  const d = o.default;
  if (d === undefined || d === false) return "—";
  if (typeof d === "object") return d.length === 0 ? "—" : d.join(", ");
  if (typeof d === "number" && o.kind === "duration") return `\`${formatDuration(d)}\``;
  if (typeof d === "number" && o.kind === "size") return `\`${formatSize(d)}\``;
  return `\`${d}\``;
}

function value(o: OptionSpec): string {
  if (o.kind === "boolean") return "";
  if (o.choices) return ` ${o.choices.join("\\|")}`;
  const unit = o.kind === "duration" ? "duration" : o.kind === "size" ? "size" : o.kind === "int" ? "n" : "text";
  return ` <${o.valueName ?? unit}>`;
}

/**
 * The Markdown reference of `asynctask serve`'s options.
 *
 * @example
 * ```ts
 * import { configurationReference } from "./reference.ts";
 * import assert from "node:assert/strict";
 * assert.match(configurationReference(), /\| `--port <n>` \| `port` \|/);
 * ```
 */
export function configurationReference(): string {
  const groups = new Map<string, OptionSpec[]>();
  for (const o of Object.values(SERVE_OPTIONS) as OptionSpec[]) {
    if (o.flag === "help") continue;
    const g = o.group ?? "Other";
    groups.set(g, [...(groups.get(g) ?? []), o]);
  }
  const out = [
    "# Configuration reference",
    "",
    "<!-- Generated from server/options.ts by `deno task docs`: edit the table there, not this file. -->",
    "",
    "Every option of `asynctask serve` is a flag, a key of the `--config` JSON file (its flag name without dashes),",
    "and, where the table says so, an environment variable. The command line wins over the environment, which wins",
    "over the file. Durations take a unit (`500ms`, `5s`, `2m`, `1h`; a bare number in the file is milliseconds);",
    "sizes take one too (`64KiB`, `1MiB`; a bare number is bytes). `asynctask serve --help` prints the same list.",
    "The `tasks` map of the config file is described in [tasks.md](tasks.md); `asynctask.schema.json` checks a",
    'config file in editors (`"$schema": "./asynctask.schema.json"`).',
    "",
  ];
  for (const [group, options] of groups) {
    out.push(`## ${group}`, "", "| flag | config key | default | what it does |", "|---|---|---|---|");
    for (const o of options) {
      const key = o.commandLineOnly ? "—" : `\`${o.flag}\``;
      const env = o.env ? ` Also the environment variable \`${o.env}\`.` : "";
      out.push(`| \`--${o.flag}${value(o)}\` | ${key} | ${shown(o)} | ${o.help.replaceAll("|", "\\|")}.${env} |`);
    }
    out.push("");
  }
  return out.join("\n");
}

if (import.meta.main) {
  const path = new URL("../docs/configuration.md", import.meta.url);
  await Deno.writeTextFile(path, configurationReference());
  console.log(`wrote ${path.pathname}`);
}
