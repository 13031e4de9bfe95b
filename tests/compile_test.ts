/**
 * The single binary: `deno task compile` builds `dist/asynctask` with the worker and handler
 * modules embedded, and that binary serves and answers its own client. `deno compile` downloads
 * its `denort` base binary; where that cannot be had (no network), this test is reported as
 * ignored with the reason in its name — never as passed.
 */
import assert from "node:assert/strict";
import { ROOT, spawnServe } from "./helpers.ts";

const out = await Deno.makeTempDir({ prefix: "asynctask-compile-" });
const exe = `${out}/asynctask`;
const compiled = await new Deno.Command(Deno.execPath(), {
  args: [
    "compile",
    "--allow-net",
    "--allow-read",
    "--allow-write",
    "--allow-env",
    "--include",
    "task/worker.ts",
    "--output",
    exe,
    "main.ts",
  ],
  cwd: ROOT,
  env: { NO_COLOR: "1" },
  stdout: "piped",
  stderr: "piped",
}).output();
const why = compiled.success ? "" : firstCause(new TextDecoder().decode(compiled.stderr));

/** "cannot download denort-….zip: failed to lookup address information: …" from deno compile's stderr. */
function firstCause(stderr: string): string {
  const text = stderr;
  const download = /Download \S*\/([^/\s]+)/.exec(text)?.[1];
  const causes = [...text.matchAll(/^\s*\d+: (.+)$/gm)].map((m) => m[1]).filter((c) => c !== "<unknown>");
  const cause = causes.at(-1) ?? text.split("\n").find((l) => /error/i.test(l))?.trim() ?? "unknown error";
  return (download ? `cannot download ${download}: ${cause}` : cause).slice(0, 200);
}

Deno.test({
  name: compiled.success
    ? "compiled binary: serve + client --send work from dist/asynctask"
    : `compiled binary: SKIPPED — deno compile cannot build here (${why})`,
  ignore: !compiled.success,
  async fn() {
    const server = await spawnServe(["--sms-delay", "100ms"], exe);
    try {
      const r = await new Deno.Command(exe, {
        args: ["client", "--port", String(server.port), "--send", "13800138000"],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(r.stdout);
      assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
      assert.match(stdout, /^ACCEPTED 1 sending SMS to 13800138000.*\nDONE 1 \{"phone":"13800138000"/);
    } finally {
      server.child.kill("SIGTERM");
      const { code } = await server.exited();
      assert.equal(code, 0);
    }
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(out, { recursive: true });
  } catch {
    // nothing to clean
  }
});
