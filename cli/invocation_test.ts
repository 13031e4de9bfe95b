/**
 * `commandFor` through the real thing: the client started the ways a person starts it — `./deno
 * task client` in the checkout and in a subdirectory, `deno run main.ts` from elsewhere, a compiled
 * binary — names `serve` in the same words when no server answers.
 */
import assert from "node:assert/strict";
import { commandFor, programName } from "./invocation.ts";

const ROOT = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const decoder = new TextDecoder();

/** A port nothing listens on: bound, then released. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = l.addr.port;
  l.close();
  return port;
}

async function run(
  cmd: string,
  args: string[],
  opts: { cwd: string; env?: Record<string, string> },
): Promise<{ code: number; stdout: string; stderr: string }> {
  // INIT_CWD is how `deno task` passes on the user's directory, unless one is set already: none may
  // leak in from the test's own runner (`./deno task test`).
  const out = await new Deno.Command("/usr/bin/env", {
    args: ["-u", "INIT_CWD", cmd, ...args],
    cwd: opts.cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", ...opts.env },
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** The "Start it with `…`" command of a client that found no server on `port`. */
function startHint(stderr: string, port: number): string {
  const m = /Start it with `([^`]+)`/.exec(stderr);
  assert.ok(m, stderr);
  assert.match(m[1], new RegExp(` serve --port ${port}$`));
  return m[1];
}

Deno.test("./deno task client in the checkout: the hint says ./deno task serve; --help's usage says ./deno task client", async () => {
  const port = freePort();
  const r = await run(`${ROOT}/deno`, ["task", "client", "--port", String(port), "--send", "13800138000"], {
    cwd: ROOT,
  });
  assert.equal(r.code, 2, r.stderr);
  assert.equal(startHint(r.stderr, port), `./deno task serve --port ${port}`);
  assert.match(r.stderr, /^\.\/deno task client: cannot connect to 127\.0\.0\.1:\d+: connection refused/m);

  const help = await run(`${ROOT}/deno`, ["task", "client", "--help"], { cwd: ROOT });
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: \.\/deno task client \[flags\]$/m);
});

Deno.test("./deno task client from a subdirectory of the checkout: the hint says ../deno task serve", async () => {
  const port = freePort();
  const r = await run(`${ROOT}/deno`, ["task", "client", "--port", String(port), "--send", "x"], {
    cwd: `${ROOT}/examples`,
  });
  assert.equal(r.code, 2, r.stderr);
  assert.equal(startHint(r.stderr, port), `../deno task serve --port ${port}`);
});

Deno.test("deno run main.ts from outside the checkout: the hint runs the checkout's task by its paths", async () => {
  const port = freePort();
  const tmp = await Deno.makeTempDir();
  // Two levels down, so that neither the directory nor its parent holds the checkout.
  const dir = `${tmp}/a/b`;
  await Deno.mkdir(dir, { recursive: true });
  try {
    const r = await run(Deno.execPath(), ["run", "-A", `${ROOT}/main.ts`, "client", "--port", String(port)], {
      cwd: dir,
    });
    assert.equal(r.code, 2, r.stderr);
    const deno = Deno.execPath().startsWith(`${ROOT}/`) ? `${ROOT}/deno` : "deno";
    assert.equal(startHint(r.stderr, port), `${deno} task --config ${ROOT}/deno.json serve --port ${port}`);
    // A server elsewhere is started with its --host.
    const far = await run(
      Deno.execPath(),
      ["run", "-A", `${ROOT}/main.ts`, "client", "--host", "localhost", "--port", String(port)],
      { cwd: ROOT },
    );
    assert.match(far.stderr, new RegExp(`Start it with \`\\./deno task serve --host localhost --port ${port}\``));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("in this test process (not main.ts): the plain program name", () => {
  assert.equal(commandFor("serve"), "asynctask serve");
  assert.equal(programName(), "asynctask");
});

// The compiled binary: `deno compile` downloads its `denort` base binary; where that cannot be had
// (no network), the test is reported as ignored with the reason in its name — never as passed.
const out = await Deno.makeTempDir({ prefix: "asynctask-invocation-" });
await Deno.writeTextFile(
  `${out}/main.ts`,
  `import { commandFor, programName } from "${ROOT}/cli/invocation.ts";\n` +
    `console.log(commandFor("serve", "--port 9501") + "|" + programName());\n`,
);
const compiled = await new Deno.Command(Deno.execPath(), {
  args: ["compile", "--allow-read", "--allow-env", "--output", `${out}/asynctask`, `${out}/main.ts`],
  cwd: out,
  env: { NO_COLOR: "1" },
  stdout: "piped",
  stderr: "piped",
}).output();
// The last cause deno compile gives ("failed to lookup address information: …"), for the skip notice.
const why = compiled.success ? "" : ([...decoder.decode(compiled.stderr).matchAll(/^\s*\d+: (.+)$/gm)]
  .map((m) => m[1]).filter((c) => c !== "<unknown>").at(-1) ?? "deno compile failed").slice(0, 160);

Deno.test({
  name: compiled.success
    ? "compiled binary: asynctask serve on the PATH, ./asynctask serve in its directory"
    : `compiled binary: SKIPPED — deno compile cannot build here (${why})`,
  ignore: !compiled.success,
  async fn() {
    const onPath = await run(`${out}/asynctask`, [], { cwd: ROOT, env: { PATH: `${out}:/usr/bin:/bin` } });
    assert.equal(onPath.stdout.trim(), "asynctask serve --port 9501|asynctask");
    const here = await run(`${out}/asynctask`, [], { cwd: out, env: { PATH: "/usr/bin:/bin" } });
    assert.equal(here.stdout.trim(), "./asynctask serve --port 9501|asynctask");
  },
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(out, { recursive: true });
  } catch {
    // nothing to clean
  }
});
