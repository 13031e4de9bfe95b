/**
 * How big the journal file gets after a million tasks, with the server's clean-up as it runs
 * under load: tasks accepted and ended in commits of 200, and a sweep (keep the newest
 * `--max-results` 100,000) every 500,000 tasks — every 10 s at 50,000 tasks/s.
 *
 * ```sh
 * ./deno run -A bench/journal_size.ts [path]
 * ```
 *
 * @module
 */
import { acceptedRow, endedRow, Journal, type JournalValue } from "../server/store/journal/file.ts";

const path = Deno.args[0] ?? (await Deno.makeTempDir()) + "/million.db";
const j = Journal.open(path, "full");
const t0 = performance.now();
let ended: JournalValue[] = [];
for (let first = 1; first <= 1_000_000; first += 200) {
  const accepted = Array.from(
    { length: 200 },
    (_, i) => acceptedRow({ id: first + i, task: "echo", data: `m${first + i}`, format: "text", attempts: 0 }),
  );
  j.write({ accepted: accepted.flat(), started: [], attempts: [], ended }); // the previous batch ends as this one is accepted
  ended = accepted.flatMap(([id]) => endedRow(id, "done", 1, `"m${id}"`, undefined));
  if ((first + 199) % 500_000 === 0) j.sweep(Date.now() - 600_000, 100_000);
}
j.write({ accepted: [], started: [], attempts: [], ended });
j.close();
const size = (p: string) => {
  try {
    return Deno.statSync(p).size;
  } catch {
    return 0;
  }
};
console.log(
  `1,000,000 tasks in ${Math.round(performance.now() - t0)} ms: ${path} is ${(size(path) / 1e6).toFixed(1)} MB (WAL ${
    (size(`${path}-wal`) / 1e6).toFixed(1)
  } MB)`,
);
