/**
 * Rolling reload: SIGHUP to a real `serve` replaces its workers one at a time with new handler
 * code, while tasks run and arrive, with nothing lost and nothing refused.
 */
import assert from "node:assert/strict";
import { LineClient, ROOT, spawnServe } from "./helpers.ts";

const moduleText = (version: string) =>
  `import type { TaskHandler } from "${ROOT}task/types.ts";
export const handlers: TaskHandler[] = [{ name: "ver", description: "its version", validate: (d) => d, run: () => "${version}" }];
`;

async function waitForLog(log: () => string, re: RegExp, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!re.test(log())) {
    if (Date.now() > deadline) throw new Error(`no ${what} in the log:\n${log()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("SIGHUP: workers replaced one at a time with new code; running and arriving tasks all finish, none refused", async () => {
  const dir = await Deno.makeTempDir();
  const mod = `${dir}/ver.ts`;
  await Deno.writeTextFile(mod, moduleText("v1"));
  const server = await spawnServe(["--module", mod, "--workers", "2"]);
  const c = await LineClient.connect(server.port);
  const stream = await LineClient.connect(server.port);
  try {
    await c.send("/task ver x", "/task sleep 600", "/task sleep 600");
    assert.deepEqual((await c.take(4)).slice(0, 3).map((l) => l.split(" ")[0]), ["ACCEPTED", "ACCEPTED", "ACCEPTED"]);
    assert.ok(c.lines.includes("DONE 1 v1"), c.lines.join("\n"));

    // Tasks keep arriving on another connection through the whole reload.
    let sent = 0;
    let streaming = true;
    const streamer = (async () => {
      while (streaming) {
        await stream.send(...Array.from({ length: 20 }, (_, i) => `/task echo s${sent + i}`));
        sent += 20;
        await new Promise((r) => setTimeout(r, 20));
      }
    })();

    await Deno.writeTextFile(mod, moduleText("v2"));
    server.child.kill("SIGHUP");
    await waitForLog(server.log, /reload done: 2 workers replaced one at a time/, "reload done");
    streaming = false;
    await streamer;

    await c.send("/task ver x");
    const rest = await c.take(4, 20_000);
    assert.ok(rest.some((l) => /^DONE \d+ v2$/.test(l)), `new code after the reload:\n${rest.join("\n")}`);
    assert.equal(rest.filter((l) => /^DONE [23] \{"slept_ms":600\}$/.test(l)).length, 2, "the running tasks finished");

    const replies = await stream.take(2 * sent, 20_000);
    assert.equal(replies.filter((l) => l.startsWith("ACCEPTED")).length, sent, "none refused");
    assert.equal(replies.filter((l) => l.startsWith("DONE")).length, sent, "none lost");

    // New code that does not load: the reload is abandoned and the old code keeps serving.
    await Deno.writeTextFile(mod, "export const handlers = [ this is not code");
    server.child.kill("SIGHUP");
    await waitForLog(server.log, /reload abandoned: cannot load handler module .*ver\.ts/, "reload abandoned");
    await c.send("/task ver x");
    const [accepted, done] = await c.take(2);
    assert.match(accepted, /^ACCEPTED \d+ ver task queued$/);
    assert.match(done, /^DONE \d+ v2$/);
  } finally {
    await Promise.all([c.close(), stream.close()]);
    server.child.kill("SIGTERM");
    const { code, log } = await server.exited();
    assert.equal(code, 0, log);
    await Deno.remove(dir, { recursive: true });
  }
});
