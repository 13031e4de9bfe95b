/**
 * `deno task compile [--target T] [--output P] [--include F]…`: builds the single `asynctask`
 * executable with `deno compile`. The one place that knows its flags: the permissions it runs with,
 * and the worker modules it must embed (`new Worker(new URL("./x.ts", import.meta.url))` is not
 * followed by `deno compile`, so each worker module is named here; tests/compile_test.ts checks
 * that every `new Worker` of the source tree is). The release workflow calls this for each target.
 *
 * The binary carries the git commit it was built from: this tool generates a small entry module
 * (`dist/.compile-entry-….ts`, deleted afterwards) that records it with `setBuildInfo` and then runs
 * `main`, so `asynctask --version` prints it. Not in tools/: there Deno would take tools/node_modules
 * (the pinned Deno from npm) for the project's packages.
 *
 * `deno compile` downloads its `denort` base binary for the target on first use; where it cannot,
 * this says so and what to do instead, exits 1, and leaves no empty output directory (nor an empty
 * dist/) behind.
 *
 * @module
 */
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { commit, VERSION } from "../cli/version.ts";

/** The targets `deno compile --target` builds, and the release ships. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
  "x86_64-pc-windows-msvc",
] as const;

/**
 * Modules loaded as workers at run time, relative to the repository root: `deno compile` must be
 * told to embed each. A build stops when a `new Worker(new URL(…))` of the source names one missing here.
 */
export const WORKER_MODULES: readonly string[] = [
  "task/worker.ts",
  "server/store/journal/thread.ts",
];

/** Files the binary serves that are not modules: the dashboard's assets (`serve --http`). */
export const EMBEDDED_FILES: readonly string[] = ["server/http/assets"];

/** What the binary may do: what `deno task serve` allows. */
export const PERMISSIONS: readonly string[] = [
  "--allow-net",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-run",
  // prctl(PR_SET_DUMPABLE): hides the token in the environment from other processes of the user (server/hide.ts)
  "--allow-ffi",
  // Deno.listen({ reusePort }) (serve --reuse-port) is behind --unstable-net.
  "--unstable-net",
];

/** The repository root, where `deno compile` runs. */
const ROOT = fileURLToPath(new URL("../", import.meta.url));

const USAGE = `Usage: deno task compile [--target <target>] [--output <path>] [--include <module>]…

Builds the asynctask executable (default: dist/asynctask, dist/asynctask.exe for Windows).

  --target   one of ${TARGETS.join(", ")}
             (default: this machine's, ${Deno.build.target})
  --output   where to write the executable
  --include  embed another module or file too (repeatable), e.g. a task module loaded at run time
  -h, --help show this help`;

/** What the command line asked for. */
export interface CompileOptions {
  target: string;
  output: string;
  include: string[];
}

/** A command line mistake: printed with the usage, exit 2. */
export class CompileUsageError extends Error {}

/** Reads `--target`, `--output` and `--include` (also as `--flag=value`); undefined for `--help`. */
export function parseCompileArgs(
  args: readonly string[],
): CompileOptions | undefined {
  let target: string | undefined;
  let output: string | undefined;
  const include: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "-h" || arg === "--help") return undefined;
    const eq = arg.indexOf("=");
    const name = arg.startsWith("--") && eq > 0 ? arg.slice(0, eq) : arg;
    if (name !== "--target" && name !== "--output" && name !== "--include") {
      throw new CompileUsageError(`unknown argument "${arg}"`);
    }
    const value = eq > 0 && arg.startsWith("--") ? arg.slice(eq + 1) : args[++i];
    if (value === undefined || value === "") {
      throw new CompileUsageError(`${name} needs a value`);
    }
    if (name === "--target") target = value;
    else if (name === "--output") output = value;
    else include.push(value);
  }
  target ??= Deno.build.target;
  if (!(TARGETS as readonly string[]).includes(target)) {
    throw new CompileUsageError(
      `unknown target "${target}": use one of ${TARGETS.join(", ")}`,
    );
  }
  output ??= "dist/asynctask";
  if (target.includes("windows") && !output.endsWith(".exe")) output += ".exe";
  return { target, output, include };
}

/** The `deno compile` arguments for `entry` (a path relative to the root). */
export function compileArgs(opts: CompileOptions, entry: string): string[] {
  return [
    "compile",
    ...PERMISSIONS,
    ...[...WORKER_MODULES, ...EMBEDDED_FILES, ...opts.include].flatMap((m) => ["--include", m]),
    "--target",
    opts.target,
    "--output",
    opts.output,
    entry,
  ];
}

/**
 * The modules that `entry` (and the workers it starts, and theirs) starts as workers —
 * `new Worker(new URL("./x.ts", import.meta.url)` in any local module of its graph, as `deno info`
 * lists it — as paths relative to `root`, sorted.
 */
export async function workerModulesOf(
  entry = "main.ts",
  root: string = ROOT,
): Promise<string[]> {
  const pattern = /new\s+Worker\(\s*new\s+URL\(\s*["'`]([^"'`]+)["'`]\s*,\s*import\.meta\.url\s*\)/g;
  const workers = new Set<string>();
  const scanned = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const info = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", queue.shift()!],
      cwd: root,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!info.success) {
      throw new Error(
        `deno info failed: ${new TextDecoder().decode(info.stderr).trim()}`,
      );
    }
    const graph: { modules: { specifier: string; error?: string }[] } = JSON
      .parse(
        new TextDecoder().decode(info.stdout),
      );
    for (const { specifier, error } of graph.modules) {
      if (
        error !== undefined || !specifier.startsWith("file:") ||
        scanned.has(specifier)
      ) continue;
      scanned.add(specifier);
      const path = fileURLToPath(specifier);
      if (!/\.(ts|js|mjs|mts)$/.test(path)) continue;
      for (const m of Deno.readTextFileSync(path).matchAll(pattern)) {
        const worker = relative(root, resolve(dirname(path), m[1])).replaceAll(
          "\\",
          "/",
        );
        if (!workers.has(worker)) queue.push(worker);
        workers.add(worker);
      }
    }
  }
  return [...workers].sort();
}

/** What is wrong with {@linkcode WORKER_MODULES} against main.ts's module graph: one sentence per problem. */
export async function workerModuleProblems(
  root: string = ROOT,
  extra: readonly string[] = [],
): Promise<string[]> {
  const listed = new Set([
    ...WORKER_MODULES,
    ...extra.map((m) => m.replace(/^\.\//, "")),
  ]);
  const problems = (await workerModulesOf("main.ts", root)).filter((m) => !listed.has(m)).map((m) =>
    `${m} is started as a worker but is not in WORKER_MODULES (tools/compile.ts): add it there, or the binary cannot start it`
  );
  for (const m of WORKER_MODULES) {
    try {
      Deno.statSync(join(root, m));
    } catch {
      problems.push(
        `WORKER_MODULES (tools/compile.ts) names ${m}, which does not exist: update the list`,
      );
    }
  }
  return problems;
}

/** The entry module of the binary: records the build, then runs the CLI. */
export function entrySource(info: { commit: string }): string {
  return `// Generated by tools/compile.ts for one build, and deleted after it: the binary's entry point.
import { setBuildInfo } from "../cli/version.ts";
import { main } from "../main.ts";

setBuildInfo(${JSON.stringify(info)});
Deno.exit(await main(Deno.args));
`;
}

/** Text without its terminal colours (ESC [ … m). */
function plain(text: string): string {
  return text.replace(
    new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g"),
    "",
  );
}

/**
 * When `deno compile` failed because it could not download its base binary: the file it wanted
 * and a short reason, from its stderr; otherwise undefined.
 */
export function runtimeDownloadFailure(
  stderr: string,
): { file?: string; reason: string } | undefined {
  const text = plain(stderr);
  const error = text.indexOf("error:");
  if (error < 0) return undefined;
  const block = text.slice(error);
  if (!/base binary|denort/i.test(block)) return undefined;
  const file = /(denort-[\w.-]+\.zip)/.exec(text)?.[1];
  const causes = [...block.matchAll(/^\s*\d+: (.+)$/gm)].map((m) => m[1].trim())
    .filter((c) => c !== "<unknown>");
  const last = causes.at(-1);
  const before = causes.at(-2);
  // "dns error" then "failed to lookup address information: …": the label says what the detail is.
  const reason = last === undefined
    ? block.split("\n")[0].slice("error:".length).trim()
    : before !== undefined && before.length <= 30 && !before.includes(":")
    ? `${before}: ${last}`
    : last;
  return { file, reason: reason.slice(0, 300) };
}

/** The message for a base binary that could not be downloaded. */
export function runtimeDownloadMessage(
  target: string,
  failure: { file?: string; reason: string },
): string {
  return `asynctask compile: deno compile needs to download the Deno runtime for ${target} ` +
    `(${failure.file ?? "denort"}, Deno ${Deno.version.deno}) from dl.deno.land and could not: ${failure.reason}.\n` +
    "  What to do: build on a machine with internet access (the release workflow does, for every target; behind a\n" +
    "  proxy, set HTTPS_PROXY; offline, point DENORT_BIN at that denort binary), or install a release archive\n" +
    "  (sh install.sh), or run from source: ./deno task serve";
}

/** The directories that creating `file` would create, deepest first. */
function missingDirs(file: string): string[] {
  const dirs: string[] = [];
  for (let dir = dirname(file); dir !== dirname(dir); dir = dirname(dir)) {
    try {
      Deno.statSync(dir);
      break;
    } catch {
      dirs.push(dir);
    }
  }
  return dirs;
}

/** Writes the generated entry module, making its directory (again, should a build beside this one remove it). */
async function writeEntry(entry: string, source: string): Promise<void> {
  for (let attempt = 1;; attempt++) {
    await Deno.mkdir(dirname(entry), { recursive: true });
    try {
      return await Deno.writeTextFile(entry, source);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) || attempt >= 3) throw e;
    }
  }
}

/** Removes what a build left: `deno compile`'s temporary file after a failure, and the empty directories made. */
function cleanUp(output: string, created: string[]): void {
  try {
    for (const e of Deno.readDirSync(dirname(output))) {
      if (
        e.isFile && e.name.startsWith(`${output.split(/[\\/]/).at(-1)}.tmp-`)
      ) {
        Deno.removeSync(resolve(dirname(output), e.name));
      }
    }
  } catch {
    // no directory: nothing left in it
  }
  for (const dir of created) {
    try {
      Deno.removeSync(dir); // only if empty
    } catch {
      // not empty (the binary is in it), or gone
    }
  }
}

/** Runs `deno compile`, forwarding its output; returns the exit code. */
async function compile(opts: CompileOptions): Promise<number> {
  const problems = await workerModuleProblems(ROOT, opts.include);
  if (problems.length > 0) {
    for (const p of problems) console.error(`asynctask compile: ${p}`);
    return 1;
  }
  const output = resolve(Deno.cwd(), opts.output);
  const build = { commit: commit() };
  const entry = resolve(
    ROOT,
    "dist",
    `.compile-entry-${crypto.randomUUID().slice(0, 8)}.ts`,
  );
  // Directories deno compile makes for the output, removed at the end if empty; and dist/, which holds the entry.
  const created = missingDirs(output).filter((d) => d !== dirname(entry))
    .concat(dirname(entry));
  await writeEntry(entry, entrySource(build));
  let stderr = "";
  let code: number;
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: compileArgs({ ...opts, output }, relative(ROOT, entry)),
      cwd: ROOT,
      stdin: "null",
      stdout: "inherit",
      stderr: "piped",
    }).spawn();
    // Ctrl-C reaches deno compile too (same process group); a signal sent to this process alone is
    // passed on. Either way the loop below ends and the clean-up runs.
    const stop = (signal: Deno.Signal) => () => child.kill(signal);
    const listeners = (["SIGINT", "SIGTERM"] as const).map((s) => [s, stop(s)] as const);
    for (const [s, l] of listeners) {
      try {
        Deno.addSignalListener(s, l);
      } catch {
        // a signal this platform cannot listen for (SIGTERM on Windows)
      }
    }
    // deno's progress lines go through as they come; from its first "error:" on, the text is held
    // back, to be replaced by a plain explanation when it is the runtime download that failed.
    let holding = false;
    let pending = "";
    const out = new TextEncoder();
    for await (
      const chunk of child.stderr.pipeThrough(new TextDecoderStream())
    ) {
      stderr += chunk;
      pending += chunk;
      const lines = pending.split("\n");
      pending = lines.pop()!;
      for (const line of lines) {
        holding ||= plain(line).startsWith("error");
        if (!holding) Deno.stderr.writeSync(out.encode(line + "\n"));
      }
    }
    if (!holding && pending) Deno.stderr.writeSync(out.encode(pending));
    code = (await child.status).code;
    for (const [s, l] of listeners) {
      try {
        Deno.removeSignalListener(s, l);
      } catch {
        // never added
      }
    }
  } finally {
    await Deno.remove(entry).catch(() => {});
  }
  cleanUp(output, created);
  if (code === 0) {
    console.error(
      `asynctask compile: built ${opts.output} (asynctask ${VERSION}, commit ${build.commit}, ${opts.target})`,
    );
    return 0;
  }
  const failure = runtimeDownloadFailure(stderr);
  if (failure) {
    console.error(runtimeDownloadMessage(opts.target, failure));
  } else {
    const error = plain(stderr).search(/^error/m);
    if (error >= 0) console.error(plain(stderr).slice(error).trimEnd());
    console.error(
      `asynctask compile: deno compile failed (exit ${code}); its message is above`,
    );
  }
  return 1;
}

if (import.meta.main) {
  let opts: CompileOptions | undefined;
  try {
    opts = parseCompileArgs(Deno.args);
  } catch (e) {
    if (!(e instanceof CompileUsageError)) throw e;
    console.error(`asynctask compile: ${e.message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (!opts) {
    console.log(USAGE);
    Deno.exit(0);
  }
  Deno.exit(await compile(opts));
}
