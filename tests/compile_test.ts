/**
 * The single binary: `deno task compile` (tools/compile.ts) builds the executable with the worker
 * and handler modules embedded and the git commit recorded, and that binary serves, answers its own
 * client, and prints its version. `deno compile` downloads its `denort` base binary; where that
 * cannot be had (no network), the binary's tests are reported as ignored with the reason in their
 * name — never as passed — and the test of the no-network message runs instead.
 */
import assert from "node:assert/strict";
import { ROOT, spawnServe } from "./helpers.ts";
import { commit, VERSION, wantsVersion } from "../cli/version.ts";
import {
  compileArgs,
  parseCompileArgs,
  PERMISSIONS,
  runtimeDownloadFailure,
  TARGETS,
  WORKER_MODULES,
  workerModuleProblems,
} from "../tools/compile.ts";

const dec = new TextDecoder();

/** `deno task compile …` from the repository root. */
async function compileTask(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await new Deno.Command(Deno.execPath(), {
    args: ["task", "--config", `${ROOT}deno.json`, "compile", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code: r.code,
    stdout: dec.decode(r.stdout),
    stderr: dec.decode(r.stderr),
  };
}

/** The files tools/compile.ts writes for a build (`dist/.compile-entry-*.ts`): none may be left. */
function leftEntries(): string[] {
  try {
    return [...Deno.readDirSync(`${ROOT}dist`)].map((e) => e.name).filter((n) => n.startsWith(".compile-entry-"));
  } catch {
    return [];
  }
}

const out = await Deno.makeTempDir({ prefix: "asynctask-compile-" });
// In a directory that does not exist yet: a failed build must not leave it behind, empty.
const exe = `${out}/bin/asynctask`;
// The release build, plus a module task embedded for the test.
const compiled = await compileTask([
  "--output",
  exe,
  "--include",
  "tests/fixtures/module_task.ts",
]);
const why = compiled.code === 0 ? "" : reasonOf(compiled.stderr);

/** "dns error: failed to lookup address information: …" from tools/compile.ts's message, or its last line. */
function reasonOf(stderr: string): string {
  const friendly = /and could not: (.+?)\.\n/.exec(stderr)?.[1];
  const last = stderr.trim().split("\n").filter((l) => l.trim() !== "").at(-1) ??
    "no message";
  return (friendly ?? last).slice(0, 200);
}

const skipped = (what: string) => `${what} SKIPPED — deno task compile cannot build here (${why})`;

Deno.test({
  name: compiled.code === 0
    ? "compiled binary: serve + client --send work"
    : skipped("compiled binary: serve + client:"),
  ignore: compiled.code !== 0,
  async fn() {
    const server = await spawnServe(["--sms-delay", "100ms"], exe);
    try {
      const r = await new Deno.Command(exe, {
        args: [
          "client",
          "--port",
          String(server.port),
          "--send",
          "13800138000",
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = dec.decode(r.stdout);
      assert.equal(r.code, 0, dec.decode(r.stderr));
      assert.match(
        stdout,
        /^ACCEPTED 1 sending SMS to 13800138000.*\nDONE 1 \{"phone":"13800138000"/,
      );
    } finally {
      server.child.kill("SIGTERM");
      const { code } = await server.exited();
      assert.equal(code, 0);
    }
  },
});

Deno.test({
  name: compiled.code === 0
    ? "compiled binary: --version carries the commit it was built from"
    : skipped("compiled binary: --version:"),
  ignore: compiled.code !== 0,
  async fn() {
    for (
      const args of [["--version"], ["serve", "--version"], ["client", "-V"]]
    ) {
      const r = await new Deno.Command(exe, {
        args,
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(r.code, 0, dec.decode(r.stderr));
      assert.equal(
        dec.decode(r.stdout).trim(),
        `asynctask ${VERSION} (commit ${commit()}, deno ${Deno.version.deno}, ${Deno.build.target})`,
      );
    }
  },
});

Deno.test({
  name: compiled.code === 0
    ? "deno task compile's no-network message: not checked — deno compile could download its runtime here"
    : "deno task compile without the runtime download: says what happened and what to do, exit 1, no empty dist/",
  ignore: compiled.code === 0,
  async fn() {
    assert.equal(compiled.code, 1, compiled.stderr);
    assert.match(
      compiled.stderr,
      new RegExp(
        `deno compile needs to download the Deno runtime for ${Deno.build.target} \\(denort-${Deno.build.target}\\.zip, ` +
          `Deno ${Deno.version.deno.replaceAll(".", "\\.")}\\) from dl\\.deno\\.land and could not: .+\\.\\n`,
      ),
    );
    assert.match(
      compiled.stderr,
      /What to do: build on a machine with internet access/,
    );
    assert.match(compiled.stderr, /\.\/deno task serve/);
    assert.doesNotMatch(
      compiled.stderr,
      /Stack backtrace/,
      "deno's raw error is replaced, not repeated",
    );
    assert.ok(
      !exists(`${out}/bin`),
      "the output directory it created is removed again",
    );
    // The default output, dist/asynctask: no empty dist/ is left behind, and what dist/ held is kept.
    const before = listing(`${ROOT}dist`);
    const plain = await compileTask([]);
    assert.equal(plain.code, 1, plain.stderr);
    assert.match(
      plain.stderr,
      /deno compile needs to download the Deno runtime/,
    );
    const after = listing(`${ROOT}dist`);
    assert.ok(
      after === undefined || after.length > 0,
      "no empty dist/ left behind",
    );
    if (before?.length) {
      assert.deepEqual(after, before, "what dist/ held is left as it was");
    }
    assert.deepEqual(
      leftEntries(),
      [],
      "the generated entry module is deleted",
    );
  },
});

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

function listing(dir: string): string[] | undefined {
  return exists(dir) ? [...Deno.readDirSync(dir)].map((e) => e.name).sort() : undefined;
}

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
  await Deno.writeTextFile(
    `${dir}/plain.mjs`,
    "export default (data) => ({ plain: data });\n",
  );
  await Deno.writeTextFile(
    `${dir}/asynctask.json`,
    JSON.stringify({
      tasks: {
        upper: { kind: "command", command: ["./upper.sh"] },
        embedded: {
          kind: "module",
          module: `${ROOT}tests/fixtures/module_task.ts`,
        },
        plain: { kind: "module", module: "./plain.mjs" },
      },
    }),
  );
  const server = await spawnServe(["--config", `${dir}/asynctask.json`], exe);
  try {
    const requests = [
      '{"task":"upper","data":"abc"}',
      '{"task":"embedded","data":2}',
      '{"task":"plain","data":1}',
    ];
    const argv = [
      "client",
      "--port",
      String(server.port),
      "--json",
      ...requests.flatMap((r) => ["--send", r]),
    ];
    const r = exe
      ? await new Deno.Command(exe, {
        args: argv,
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output()
      : await new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", `${ROOT}main.ts`, ...argv],
        stdout: "piped",
        stderr: "piped",
        env: { NO_COLOR: "1" },
      }).output();
    const stdout = dec.decode(r.stdout);
    assert.equal(r.code, 0, stdout + dec.decode(r.stderr));
    assert.match(stdout, /"result":"ABC"/);
    assert.match(
      stdout,
      /"type":"progress","task_id":2,"progress":50,"message":"half way"/,
    );
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
  name: compiled.code === 0
    ? "compiled binary: command tasks, an embedded module task, and a JavaScript module task from disk"
    : skipped("compiled binary: config tasks"),
  ignore: compiled.code !== 0,
  fn: () => configTasksScenario(exe),
});

Deno.test("from source: --version, and a command's --version or -V, print version, commit, deno and target", async () => {
  const git = await new Deno.Command("git", {
    args: ["rev-parse", "--short=7", "HEAD"],
    cwd: ROOT,
    stdout: "piped",
  })
    .output().catch(() => undefined);
  if (git?.success) {
    assert.equal(
      commit(),
      dec.decode(git.stdout).trim().slice(0, 7),
      "the commit is git's HEAD",
    );
  }
  const line = `asynctask ${VERSION} (commit ${commit()}, deno ${Deno.version.deno}, ${Deno.build.target})`;
  for (
    const args of [["--version"], ["-V"], ["serve", "--version"], [
      "client",
      "-V",
    ], ["bench", "--version"]]
  ) {
    const r = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", `${ROOT}main.ts`, ...args],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(r.code, 0, `${args.join(" ")}: ${dec.decode(r.stderr)}`);
    assert.equal(dec.decode(r.stdout).trim(), line, args.join(" "));
  }
  assert.ok(
    !wantsVersion(["--send", "x", "--", "--version"]),
    "after --, --version is an argument",
  );
});

Deno.test("deno task compile is tools/compile.ts, and the release workflow builds every target with it", async () => {
  const denoJson = JSON.parse(await Deno.readTextFile(`${ROOT}deno.json`));
  assert.equal(denoJson.tasks.compile, "deno run -A tools/compile.ts");
  const workflow = await Deno.readTextFile(
    `${ROOT}.github/workflows/release.yml`,
  );
  assert.match(
    workflow,
    /\.\/deno task compile --target \$\{\{ matrix\.target \}\}/,
  );
  assert.doesNotMatch(
    workflow,
    /\.\/deno compile/,
    "no compile flags of its own: they are tools/compile.ts's",
  );
  const matrix = /target:\n((?:\s+- \S+\n)+)/.exec(workflow)?.[1].trim().split(
    /\s*-\s+/,
  ).filter(Boolean);
  assert.deepEqual(matrix, [...TARGETS]);
  assert.match(workflow, /tags: \["v\*"\]/);
  assert.match(workflow, /workflow_dispatch:/);
  assert.match(workflow, /id-token: write/);
  assert.match(workflow, /attestations: write/);
  assert.match(
    workflow,
    /actions\/attest-build-provenance@v\d+\n\s+with:\n\s+subject-checksums: dist\/SHA256SUMS/,
  );
  assert.match(
    workflow,
    /sha256sum asynctask-\*\.tar\.gz asynctask-\*\.zip > SHA256SUMS/,
  );
});

Deno.test("tools/compile.ts embeds every worker module that main.ts's graph starts, and only existing ones", async () => {
  assert.deepEqual(await workerModuleProblems(), []);
});

Deno.test("tools/compile.ts: arguments, the deno compile command line, and reading a failed download", () => {
  assert.deepEqual(parseCompileArgs([]), {
    target: Deno.build.target,
    output: "dist/asynctask",
    include: [],
  });
  assert.deepEqual(
    parseCompileArgs(["--target=x86_64-pc-windows-msvc", "--include", "a.ts"]),
    {
      target: "x86_64-pc-windows-msvc",
      output: "dist/asynctask.exe",
      include: ["a.ts"],
    },
  );
  assert.equal(parseCompileArgs(["--help"]), undefined);
  assert.throws(
    () => parseCompileArgs(["--target", "riscv64-unknown-linux-gnu"]),
    /unknown target/,
  );
  assert.throws(() => parseCompileArgs(["--output"]), /--output needs a value/);
  assert.throws(() => parseCompileArgs(["main.ts"]), /unknown argument/);
  const args = compileArgs({
    target: TARGETS[3],
    output: "o",
    include: ["x.ts"],
  }, "dist/e.ts");
  for (const flag of PERMISSIONS) assert.ok(args.includes(flag), flag);
  for (const m of [...WORKER_MODULES, "x.ts"]) {
    assert.ok(args.join(" ").includes(`--include ${m}`), m);
  }
  assert.deepEqual(args.slice(-5), [
    "--target",
    TARGETS[3],
    "--output",
    "o",
    "dist/e.ts",
  ]);

  // deno compile's stderr here, without a network.
  const offline = `Compile main.ts to dist/asynctask
Download https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip
error: Writing deno compile executable to temporary file 'dist/asynctask.tmp-a9285bb088ddfc74'

Caused by:
    0: Setting up base binary.
    1: error sending request for url (https://dl.deno.land/release/v2.9.6/denort-x86_64-unknown-linux-gnu.zip): client error (Connect): dns error: failed to lookup address information: Name or service not known
    2: client error (Connect)
    3: dns error
    4: failed to lookup address information: Name or service not known

Stack backtrace:
   0: <unknown>
`;
  assert.deepEqual(runtimeDownloadFailure(offline), {
    file: "denort-x86_64-unknown-linux-gnu.zip",
    reason: "dns error: failed to lookup address information: Name or service not known",
  });
  assert.equal(
    runtimeDownloadFailure(
      "Check main.ts\nerror: TS2339 [ERROR]: Property 'x' does not exist",
    ),
    undefined,
  );
});
