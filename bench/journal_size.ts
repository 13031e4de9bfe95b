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
import { Journal } from "../server/journal.ts";

const path = Deno.args[0] ?? (await Deno.makeTempDir()) + "/million.db";
const j = Journal.open(path, "full");
const t0 = performance.now();
for (let id = 1; id <= 1_000_000; id++) {
  j.accept({ id, task: "echo", data: `m${id}`, format: "text", attempts: 0 });
  if (id % 200 === 0) {
    j.commit();
    for (let k = id - 199; k <= id; k++) j.finish(k, "done", 1, `m${k}`, undefined);
  }
  if (id % 500_000 === 0) j.sweep(Date.now() - 600_000, 100_000);
}
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
