/**
 * How the user runs asynctask, so that hints name commands in the words they typed: from a source
 * checkout that is `./deno task serve` (the pinned Deno wrapper) or `deno task serve` (a Deno on the
 * PATH); from the compiled binary it is `asynctask serve` (or `./dist/asynctask serve` when the
 * binary is not on the PATH).
 *
 * @module
 */

/** What a process knows about how it was started. Tests and examples pass their own. */
export interface Runtime {
  /** {@linkcode Deno.execPath}: the `deno` binary, or the compiled program. */
  execPath: string;
  /** {@linkcode Deno.mainModule}: a `file:` URL of `main.ts` when running from a checkout. */
  mainModule: string;
  /** The directory the user ran the command in. */
  cwd: string;
  /** The `PATH` entries, to tell `asynctask` from `./dist/asynctask`. */
  path: string[];
  /** Whether a file exists at this absolute path. */
  isFile(path: string): boolean;
}

/**
 * The command that runs subcommand `sub` (with `args`, as the user would type them) the way this
 * process was started.
 *
 * @example
 * ```ts
 * import { commandFor, type Runtime } from "./invocation.ts";
 * import assert from "node:assert/strict";
 * const files = new Set(["/src/asynctask/deno.json", "/src/asynctask/main.ts", "/src/asynctask/deno"]);
 * const checkout: Runtime = {
 *   execPath: "/src/asynctask/tools/node_modules/deno/deno",
 *   mainModule: "file:///src/asynctask/main.ts",
 *   cwd: "/src/asynctask",
 *   path: ["/usr/bin"],
 *   isFile: (p) => files.has(p),
 * };
 * assert.equal(commandFor("serve", "--port 9501", checkout), "./deno task serve --port 9501");
 * assert.equal(commandFor("client", "", { ...checkout, cwd: "/src/asynctask/examples" }), "../deno task client");
 * assert.equal(commandFor("bench", "--help", checkout), "./deno task load --help");
 * const binary: Runtime = {
 *   execPath: "/usr/local/bin/asynctask",
 *   mainModule: "file:///tmp/deno-compile-asynctask/main.ts",
 *   cwd: "/home/me",
 *   path: ["/usr/local/bin", "/usr/bin"],
 *   isFile: () => false,
 * };
 * assert.equal(commandFor("serve", "--port 9501", binary), "asynctask serve --port 9501");
 * assert.equal(commandFor("bench", "--help", binary), "asynctask bench --help");
 * assert.equal(commandFor("serve", undefined, { ...binary, path: [], cwd: "/usr/local" }), "./bin/asynctask serve");
 * ```
 */
export function commandFor(sub: string, args?: string, runtime: Runtime | undefined = currentRuntime()): string {
  const tail = args && args.trim() !== "" ? ` ${args.trim()}` : "";
  const fromSource = runtime !== undefined && isDeno(runtime.execPath) && checkoutOf(runtime) !== undefined;
  const name = fromSource && Object.hasOwn(SOURCE_TASKS, sub) ? SOURCE_TASKS[sub] : sub;
  return `${invocationPrefix(runtime)} ${name}${tail}`;
}

/**
 * How the user runs the deno.json task `task` of this checkout (`./deno task bench`): for the
 * programs of the checkout that are not `main.ts`, such as the benchmark suite.
 */
export function sourceTaskCommand(
  task: string,
  args?: string,
  runtime: Runtime | undefined = currentRuntime(),
): string {
  const tail = args && args.trim() !== "" ? ` ${args.trim()}` : "";
  const checkout = runtime && { ...runtime, mainModule: new URL("../main.ts", import.meta.url).href };
  const prefix = checkout && isDeno(checkout.execPath) && checkoutOf(checkout) !== undefined
    ? invocationPrefix(checkout)
    : "deno task";
  return `${prefix} ${task}${tail}`;
}

/**
 * The deno.json tasks that run a subcommand under another name: `deno task bench` is the
 * benchmark suite, so the load generator (`asynctask bench`) is `deno task load` from source.
 */
const SOURCE_TASKS: Readonly<Record<string, string>> = { bench: "load" };

/**
 * The program's name: `asynctask` from a checkout, the compiled binary's file name otherwise
 * (messages name a command with {@linkcode commandFor}, which builds on it).
 *
 * @example
 * ```ts
 * import { programName } from "./invocation.ts";
 * import assert from "node:assert/strict";
 * const runtime = { mainModule: "file:///x/main.ts", cwd: "/", path: [], isFile: () => false };
 * assert.equal(programName({ ...runtime, execPath: "/opt/tools/asynctask" }), "asynctask");
 * assert.equal(programName({ ...runtime, execPath: "/opt/tools/taskd.exe" }), "taskd");
 * assert.equal(programName({ ...runtime, execPath: "/usr/bin/deno" }), "asynctask");
 * ```
 */
export function programName(runtime: Runtime | undefined = currentRuntime()): string {
  if (runtime === undefined || isDeno(runtime.execPath)) return "asynctask";
  return basename(runtime.execPath).replace(/\.exe$/i, "") || "asynctask";
}

/** `./deno task`, `deno task --config …/deno.json`, `asynctask`, `./dist/asynctask`: what comes before the subcommand. */
function invocationPrefix(runtime: Runtime | undefined): string {
  if (runtime === undefined) return "asynctask";
  if (isDeno(runtime.execPath)) {
    const root = checkoutOf(runtime);
    if (root === undefined) return "asynctask";
    const cwdInside = within(runtime.cwd, root);
    const config = cwdInside ? "" : ` --config ${shown(runtime.cwd, `${root}/deno.json`)}`;
    // The pinned Deno lives under the checkout (tools/node_modules/…) and is run through the `./deno` wrapper.
    const wrapper = `${root}/deno`;
    const deno = within(runtime.execPath, root) && runtime.isFile(wrapper) ? shown(runtime.cwd, wrapper) : "deno";
    return `${deno} task${config}`;
  }
  const dir = dirname(runtime.execPath);
  if (runtime.path.some((p) => p !== "" && trimSlash(p) === dir)) return programName(runtime);
  return shown(runtime.cwd, runtime.execPath);
}

/** The checkout's root when the main module is a `main.ts` file next to a `deno.json`. */
function checkoutOf(runtime: Runtime): string | undefined {
  if (!runtime.mainModule.startsWith("file://")) return undefined;
  let file: string;
  try {
    file = decodeURIComponent(new URL(runtime.mainModule).pathname);
  } catch {
    return undefined;
  }
  if (basename(file) !== "main.ts") return undefined;
  const root = dirname(file);
  return runtime.isFile(`${root}/deno.json`) ? root : undefined;
}

function isDeno(execPath: string): boolean {
  return /^deno(\.exe)?$/i.test(basename(execPath));
}

function basename(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

function dirname(path: string): string {
  const at = path.lastIndexOf("/");
  return at <= 0 ? "/" : path.slice(0, at);
}

function trimSlash(path: string): string {
  return path.length > 1 ? path.replace(/\/+$/, "") : path;
}

function within(path: string, dir: string): boolean {
  const d = trimSlash(dir);
  return path === d || path.startsWith(d === "/" ? "/" : `${d}/`);
}

/** `target` as typed in `cwd`: `./deno`, `../deno`, or its absolute path when it is not below `cwd` or its parent. */
function shown(cwd: string, target: string): string {
  const from = trimSlash(cwd);
  if (within(target, from)) return `./${target.slice(from === "/" ? 1 : from.length + 1)}`;
  const parent = dirname(from);
  if (parent !== "/" && within(target, parent)) return `../${target.slice(parent.length + 1)}`;
  return target;
}

let cached: Runtime | undefined | null = null;

/** This process's {@linkcode Runtime}, or `undefined` where permissions hide it (then hints say `asynctask`). */
export function currentRuntime(): Runtime | undefined {
  if (cached !== null) return cached;
  try {
    const env = (name: string) => {
      try {
        return Deno.env.get(name);
      } catch {
        return undefined;
      }
    };
    const cwd = Deno.cwd().replaceAll("\\", "/");
    const mainDir = Deno.mainModule.startsWith("file://")
      ? dirname(decodeURIComponent(new URL(Deno.mainModule).pathname))
      : undefined;
    // `deno task` runs in the directory of deno.json (main.ts's) and keeps the user's own in INIT_CWD;
    // anywhere else, an INIT_CWD is some other tool's.
    const initCwd = env("INIT_CWD");
    cached = {
      execPath: Deno.execPath().replaceAll("\\", "/"),
      mainModule: Deno.mainModule,
      cwd: initCwd && cwd === mainDir ? initCwd.replaceAll("\\", "/") : cwd,
      path: (env("PATH") ?? "").split(Deno.build.os === "windows" ? ";" : ":"),
      isFile(path) {
        try {
          return Deno.statSync(path).isFile;
        } catch {
          return false;
        }
      },
    };
  } catch {
    cached = undefined;
  }
  return cached;
}
