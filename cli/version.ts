/**
 * `asynctask --version`: the version from deno.json, the git commit it was built from, the Deno
 * it runs on and the platform, e.g. `asynctask 0.1.0 (commit abc1234, deno 2.9.6, x86_64-unknown-linux-gnu)`.
 *
 * A binary built by `deno task compile` (tools/compile.ts) carries its commit: the entry point that
 * tool generates calls {@linkcode setBuildInfo} before {@linkcode main}. From a source checkout the
 * commit is read from the checkout's `.git` (or asked of `git` where running it is allowed); where
 * neither works it is "unknown".
 *
 * @module
 */
import denoJson from "../deno.json" with { type: "json" };

/** The version printed by `asynctask --version`: deno.json's. */
export const VERSION: string = denoJson.version;

/** What a build embeds. */
export interface BuildInfo {
  /** The short git commit the binary was built from, or "unknown". */
  commit: string;
}

let embedded: BuildInfo | undefined;

/** Records the build's information; called by the entry point that tools/compile.ts generates. */
export function setBuildInfo(info: BuildInfo): void {
  embedded = info;
}

/** True when `args` ask for the version: `--version` or `-V` before any `--`. */
export function wantsVersion(args: readonly string[]): boolean {
  for (const a of args) {
    if (a === "--") return false;
    if (a === "--version" || a === "-V") return true;
  }
  return false;
}

/** The line `asynctask --version` prints. */
export function versionLine(): string {
  return `asynctask ${VERSION} (commit ${commit()}, deno ${Deno.version.deno}, ${Deno.build.target})`;
}

/** The embedded commit; else, from a source checkout, its HEAD; else "unknown". */
export function commit(): string {
  if (embedded) return embedded.commit;
  // A compiled binary's modules live in its embedded file system, which holds no `.git`.
  if (Deno.build.standalone) return "unknown";
  const root = new URL("../", import.meta.url);
  if (root.protocol !== "file:") return "unknown";
  const readable = Deno.permissions.querySync({ name: "read", path: root }).state === "granted";
  return (readable ? commitFromGitDir(root) : undefined) ?? commitFromGit(root) ?? "unknown";
}

/** HEAD's commit read from `<root>/.git` with no `git` program: a branch ref, a packed ref or a detached HEAD. */
export function commitFromGitDir(root: URL): string | undefined {
  try {
    let gitDir = new URL(".git/", root);
    if (Deno.statSync(new URL(".git", root)).isFile) {
      // A linked worktree or a submodule: `.git` is a file saying `gitdir: <path>`.
      const line = Deno.readTextFileSync(new URL(".git", root)).trim();
      if (!line.startsWith("gitdir:")) return undefined;
      gitDir = dirUrl(line.slice("gitdir:".length).trim(), root);
    }
    let commonDir = gitDir;
    try {
      commonDir = dirUrl(Deno.readTextFileSync(new URL("commondir", gitDir)).trim(), gitDir);
    } catch {
      // not a linked worktree: refs live in the git directory itself
    }
    const head = Deno.readTextFileSync(new URL("HEAD", gitDir)).trim();
    if (!head.startsWith("ref:")) return shortHash(head);
    const ref = head.slice("ref:".length).trim();
    for (const dir of [gitDir, commonDir]) {
      try {
        return shortHash(Deno.readTextFileSync(new URL(ref, dir)).trim());
      } catch {
        // not a loose ref here
      }
    }
    const packed = Deno.readTextFileSync(new URL("packed-refs", commonDir));
    for (const line of packed.split("\n")) {
      const [hash, name] = line.trim().split(" ");
      if (name === ref) return shortHash(hash);
    }
  } catch {
    // no readable .git: not a checkout, or no read permission
  }
  return undefined;
}

/** HEAD's commit from `git rev-parse`, only where running `git` is already allowed (never a prompt). */
function commitFromGit(root: URL): string | undefined {
  if (Deno.permissions.querySync({ name: "run", command: "git" }).state !== "granted") return undefined;
  try {
    const out = new Deno.Command("git", {
      args: ["rev-parse", "--short=7", "HEAD"],
      cwd: root,
      stdout: "piped",
      stderr: "null",
    }).outputSync();
    return out.success ? shortHash(new TextDecoder().decode(out.stdout).trim()) : undefined;
  } catch {
    return undefined;
  }
}

function shortHash(hash: string): string | undefined {
  return /^[0-9a-f]{7,64}$/.test(hash) ? hash.slice(0, 7) : undefined;
}

/** A directory's URL from a path that git wrote: absolute, relative to `base`, or a Windows `C:\\…` one. */
function dirUrl(path: string, base: URL): URL {
  const slashed = path.replaceAll("\\", "/").replace(/\/?$/, "/");
  return new URL(/^[A-Za-z]:\//.test(slashed) ? `file:///${slashed}` : slashed, base);
}
