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
// The release build is `deno task compile`: the same flags, plus a module task embedded for the test.
const task = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`)).tasks.compile as string;
const args = task.split(/\s+/).slice(2).flatMap((a, i, all) =>
  a === "main.ts" ? ["--include", "tests/fixtures/module_task.ts", a] : all[i - 1] === "--output" ? [exe] : [a]
);
const compiled = await new Deno.Command(Deno.execPath(), {
  args: ["compile", ...args],
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

/**
 * A config with a command task, a module task embedded in the binary, and a plain JavaScript
 * module read from disk; each is run once through `exe serve` (or main.ts from source).
 */
async function configTasksScenario(exe?: string): Promise<void> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/upper.sh`, "#!/bin/sh\ntr a-z A-Z\n");
  await Deno.chmod(`${dir}/upper.sh`, 0o755);
  await Deno.writeTextFile(`${dir}/plain.mjs`, "export default (data) => ({ plain: data });\n");
  await Deno.writeTextFile(
    `${dir}/asynctask.json`,
    JSON.stringify({
      tasks: {
        upper: { kind: "command", command: ["./upper.sh"] },
        embedded: { kind: "module", module: `${ROOT}tests/fixtures/module_task.ts` },
        plain: { kind: "module", module: "./plain.mjs" },
      },
    }),
  );
  const server = await spawnServe(["--config", `${dir}/asynctask.json`], exe);
  try {
    const requests = ['{"task":"upper","data":"abc"}', '{"task":"embedded","data":2}', '{"task":"plain","data":1}'];
    const argv = ["client", "--port", String(server.port), "--json", ...requests.flatMap((r) => ["--send", r])];
    const r = exe
      ? await new Deno.Command(exe, { args: argv, stdout: "piped", stderr: "piped", env: { NO_COLOR: "1" } }).output()
      : await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}main.ts`, ...argv],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
    const stdout = new TextDecoder().decode(r.stdout);
    assert.equal(r.code, 0, stdout + new TextDecoder().decode(r.stderr));
    assert.match(stdout, /"result":"ABC"/);
    assert.match(stdout, /"type":"progress","task_id":2,"progress":50,"message":"half way"/);
    assert.match(stdout, /"result":\{"doubled":4\}/);
    assert.match(stdout, /"result":\{"plain":1\}/);
  } finally {
    server.child.kill("SIGTERM");
    await server.exited();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("from source: command tasks, a TypeScript module task and a JavaScript module task", () =>
  configTasksScenario());

Deno.test({
  name: compiled.success
    ? "compiled binary: command tasks, an embedded module task, and a JavaScript module task from disk"
    : `compiled binary: config tasks SKIPPED — deno compile cannot build here (${why})`,
  ignore: !compiled.success,
  fn: () => configTasksScenario(exe),
});

Deno.test("the release workflow compiles with the flags of `deno task compile`", async () => {
  const workflow = await Deno.readTextFile(`${ROOT}.github/workflows/release.yml`);
  const step = /\.\/deno compile ([^\n]+\n[^\n]+)/.exec(workflow)?.[1].replace(/\s+/g, " ");
  assert.ok(step, "the workflow runs ./deno compile");
  const flags = task.split(/\s+/).slice(2).filter((a, i, all) => a !== "--output" && all[i - 1] !== "--output");
  for (const flag of flags) assert.ok(step.split(" ").includes(flag), `release.yml lacks ${flag}: ${step}`);
});
