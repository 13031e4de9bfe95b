/**
 * The first `./deno task serve` on a machine: with an empty Deno cache, `./deno` caches the
 * project's npm packages before the server starts, so that the server's "listening on …" line
 * stays the last thing on the screen — no download progress bar drawn over it afterwards. Run in a
 * real pseudo-terminal (`script` from util-linux) with an empty `DENO_DIR`; it needs the npm
 * registry, and reports itself skipped, with the reason, where the registry cannot be reached.
 */
import assert from "node:assert/strict";
import { LineClient, openTerminal, ROOT } from "./helpers.ts";
import { replay } from "./client_screen.ts";

/** Why this test cannot run here, if it cannot. */
async function skipReason(): Promise<string | undefined> {
  try {
    await Deno.stat("/usr/bin/script");
  } catch {
    return "`script` (util-linux) is not installed; it gives the server a pseudo-terminal";
  }
  // Deno fetches npm packages from the registry that NPM_CONFIG_REGISTRY names, npm's by default.
  const registry = Deno.env.get("NPM_CONFIG_REGISTRY") || "https://registry.npmjs.org/";
  try {
    const res = await fetch(registry, { method: "HEAD", signal: AbortSignal.timeout(10_000) });
    await res.body?.cancel();
    return undefined;
  } catch (e) {
    return `the npm registry ${registry} cannot be reached (${(e as Error).message})`;
  }
}

const skipped = await skipReason();

Deno.test({
  name: "first run with an empty Deno cache: ./deno caches the dependencies first, and the listening line stays last" +
    (skipped ? ` — SKIPPED: ${skipped}` : ""),
  ignore: skipped !== undefined,
  async fn() {
    const denoDir = await Deno.makeTempDir({ prefix: "asynctask-deno-dir-" });
    try {
      // A terminal of a real size: Deno draws its progress bar only on a terminal whose width it knows.
      const term = await openTerminal(
        `stty cols 120 rows 40 && cd ${ROOT} && DENO_DIR=${denoDir} exec ./deno task serve --port 0 --stats-interval 0`,
      );
      let stopped = false;
      try {
        await term.waitFor(/listening on 127\.0\.0\.1:\d+/, "the listening line", 120_000);
        const port = Number(/listening on 127\.0\.0\.1:(\d+)/.exec(term.screen)![1]);
        /** The screen's non-empty lines, as a person sees them. */
        const shown = () => replay(term.screen).lines.filter((l) => l.trim() !== "");
        const LISTENING = /^\S+ INF asynctask\.server: listening on 127\.0\.0\.1:\d+ /;

        // The workers start with the server: a lazy download would draw its bar over the last line by now.
        await new Promise((r) => setTimeout(r, 1500));
        assert.match(shown().at(-1) ?? "", LISTENING, `as shown:\n${shown().join("\n")}`);
        // A task makes the workers run their code.
        const client = await LineClient.connect(port);
        try {
          await client.send("/task echo hello");
          assert.match(await client.next(30_000), /^ACCEPTED 1 /);
          assert.equal(await client.next(30_000), "DONE 1 hello");
        } finally {
          await client.close();
        }
        await new Promise((r) => setTimeout(r, 1000));

        const raw = term.screen;
        const listening = raw.lastIndexOf("listening on");
        const caching = raw.indexOf("./deno: caching the project's dependencies (first run) …");
        assert.ok(
          caching >= 0 && caching < listening,
          `./deno says it caches the dependencies, before the server starts:\n${JSON.stringify(raw)}`,
        );
        assert.ok(!raw.slice(listening).includes("Download"), `nothing is downloaded after listening:\n${raw}`);
        // The listening line is still shown, and below it only the server's own log lines (the task's, at info).
        const lines = shown();
        const at = lines.findIndex((l) => LISTENING.test(l));
        assert.ok(at >= 0, `the listening line is still shown:\n${lines.join("\n")}`);
        for (const line of lines.slice(at + 1)) {
          assert.match(line, /^\S+ (DBG|INF|WRN|ERR) asynctask\./, lines.join("\n"));
        }

        await term.type("\x03"); // Ctrl-C: a graceful stop
        await term.waitFor(/stopped: every accepted task finished/, "the server's stop", 30_000);
        stopped = true;
        assert.equal((await term.status).code, 0, term.screen);
      } finally {
        if (!stopped) {
          // Ctrl-C, and time to stop: closing the terminal first would send the server SIGHUP (a reload), not a stop.
          await term.type("\x03").catch(() => {});
          let timer: ReturnType<typeof setTimeout> | undefined;
          await Promise.race([term.status, new Promise((r) => timer = setTimeout(r, 35_000))]);
          clearTimeout(timer);
        }
        await term.close();
      }

      // Once cached, nothing more: the next task in the same cache says nothing about it.
      const again = await new Deno.Command(`${ROOT}deno`, {
        args: ["task"],
        env: { DENO_DIR: denoDir, NO_COLOR: "1" },
        stdout: "null",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(again.stderr);
      assert.ok(again.success, stderr);
      assert.ok(!stderr.includes("caching"), stderr);
    } finally {
      await Deno.remove(denoDir, { recursive: true });
    }
  },
});
