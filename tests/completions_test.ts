/**
 * `asynctask completions bash|zsh|fish`, end to end: the scripts the real command prints, loaded
 * into the real shells. bash: its completion function called with `COMP_WORDS`, as bash calls it
 * on Tab. zsh: Tab typed in an interactive zsh on a pseudo-terminal (`zsh/zpty`), the matches it
 * adds captured. fish: `complete -C`. Where zsh or fish is not installed, its test reports itself
 * skipped, with the reason.
 */
import assert from "node:assert/strict";
import { runCli } from "./helpers.ts";
import { flagSpecs } from "../cli/options.ts";
import { SERVE_OPTIONS } from "../server/options.ts";
import { DISPATCH_MODES } from "../task/dispatch.ts";

/** Whether `cmd` runs here. */
async function has(cmd: string, ...args: string[]): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args, stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}

const zsh = await has("zsh", "-fc", "zmodload zsh/zpty");
const fish = await has("fish", "-c", "true");
const skip = (ok: boolean, shell: string) => ok ? "" : ` — SKIPPED: ${shell} is not installed`;

/** The script `asynctask completions <shell>` prints, saved beside `dir` (not among the file names completed). */
async function script(shell: string, dir: string): Promise<string> {
  const r = await runCli(["completions", shell]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, "");
  const path = `${dir}/../asynctask.${shell}`;
  await Deno.writeTextFile(path, r.stdout);
  return path;
}

/** Runs a shell; its stdout's lines, sorted. */
async function lines(cmd: string, args: string[], cwd: string): Promise<string[]> {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" }).output();
  const dec = new TextDecoder();
  assert.ok(out.success, `${cmd} failed: ${dec.decode(out.stderr)}`);
  return dec.decode(out.stdout).split("\n").filter((l) => l !== "").sort();
}

/** What bash offers for `words` (the last one is the word being completed), in `cwd`. */
function bash(path: string, cwd: string, words: string[]): Promise<string[]> {
  const call =
    'source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}; ' +
    '_asynctask; printf "%s\\n" "${COMPREPLY[@]}"';
  return lines("bash", ["--norc", "--noprofile", "-c", call, "bash", path, ...words], cwd);
}

/**
 * Types `$2` and Tab in an interactive zsh (compinit, then the script `$1` sourced), on a
 * pseudo-terminal of zsh's own, and prints each match completion adds instead of listing it.
 */
const ZSH_DRIVER = String.raw`zmodload zsh/zpty || exit 3
script=$1 line=$2 out=""
zpty z zsh -f -i
# Reads what the terminal shows until a line that is exactly $1.
until_line() {
  local chunk end=$(( SECONDS + 20 ))
  while (( SECONDS < end )); do
    zpty -rt z chunk && out+=$chunk || sleep 0.02
    [[ $out == *$'\n'$1[$'\r\n']* ]] && return 0
  done
  return 1
}
zpty -w z "PROMPT='%% '; autoload -Uz compinit; compinit -u -D; source $script:q"
zpty -w z 'compadd() { if [[ $argv[1,(i)(-|--)] == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi; local -a hits; local h; builtin compadd -A hits "$@"; (( $#hits )) || return 1; for h in $hits; do print -r -- "<match>$h"; done; }'
zpty -w z 'print -r -- __RE""ADY__'
until_line __READY__ || { print -u2 -r -- "zsh did not start: $out"; exit 4; }
out=""
zpty -w -n z "$line"$'\t'
zpty -w z $'\x15print -r -- __E""ND__'
until_line __END__ || { print -u2 -r -- "zsh did not finish completing: $out"; exit 5; }
zpty -d z
print -r -- "$out" | tr -d '\r' | sed -n 's/.*<match>\([^[:cntrl:]]*\).*/\1/p'
`;

/** What zsh offers on Tab after `line`, in `cwd`. */
async function zshOffers(path: string, cwd: string, line: string): Promise<string[]> {
  const driver = `${cwd}/../driver.zsh`;
  await Deno.writeTextFile(driver, ZSH_DRIVER);
  return [...new Set(await lines("zsh", ["-f", driver, path, line], cwd))].sort();
}

/** What fish offers for `line` (`complete -C`), without the descriptions. */
async function fishOffers(path: string, cwd: string, line: string): Promise<string[]> {
  const found = await lines("fish", ["--no-config", "-c", "source $argv[1]; complete -C $argv[2]", path, line], cwd);
  return found.map((l) => l.split("\t")[0]);
}

/** Runs `fn` in a temporary directory that holds two files to complete, and nothing else. */
async function inDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const top = await Deno.makeTempDir();
  const dir = `${top}/files`;
  try {
    await Deno.mkdir(dir);
    await Deno.writeTextFile(`${dir}/tasks.json`, "{}");
    await Deno.writeTextFile(`${dir}/cert.pem`, "");
    await fn(dir);
  } finally {
    await Deno.remove(top, { recursive: true });
  }
}

const SERVE_FLAGS = flagSpecs(SERVE_OPTIONS).map((f) => `--${f.name}`);
const WOR = SERVE_FLAGS.filter((f) => f.startsWith("--wor")).sort();

Deno.test("completions bash: serve --wor → --workers (and the other --wor… flags); --dispatch → its three modes; files after --config", async () => {
  await inDir(async (dir) => {
    const path = await script("bash", dir);
    assert.ok(WOR.includes("--workers"));
    assert.deepEqual(await bash(path, dir, ["asynctask", "serve", "--wor"]), WOR);
    assert.deepEqual(await bash(path, dir, ["asynctask", "serve", "--dispatch", ""]), [...DISPATCH_MODES].sort());
    assert.equal(DISPATCH_MODES.length, 3);
    // --dispatch=ro: bash cuts the word at the "=".
    assert.deepEqual(await bash(path, dir, ["asynctask", "serve", "--dispatch", "=", "ro"]), ["round-robin"]);
    assert.deepEqual(await bash(path, dir, ["asynctask", "serve", "--config", "ta"]), ["tasks.json"]);
    assert.deepEqual(await bash(path, dir, ["asynctask", "client", "--ca", ""]), ["cert.pem", "tasks.json"]);
    assert.deepEqual(await bash(path, dir, ["asynctask", "serve", "--port", ""]), [], "a port is the user's to type");
    assert.deepEqual(await bash(path, dir, ["asynctask", "serve", "--log-level", ""]), [
      "debug",
      "error",
      "info",
      "warning",
    ]);
    assert.deepEqual(await bash(path, dir, ["asynctask", ""]), [
      "--help",
      "--version",
      "-V",
      "-h",
      "bench",
      "cancel",
      "client",
      "completions",
      "pause",
      "resume",
      "retry",
      "serve",
      "status",
      "tasks",
    ]);
    assert.deepEqual(await bash(path, dir, ["asynctask", "completions", "z"]), ["zsh"]);
    assert.deepEqual(await bash(path, dir, ["asynctask", "client", "--q"]), ["--quiet"]);
    assert.deepEqual(await bash(path, dir, ["asynctask", "tasks", "--sch"]), ["--scheduled"]);
    // bench --spawn -- <serve flags>
    assert.deepEqual(await bash(path, dir, ["asynctask", "bench", "--spawn", "--", "--wor"]), WOR);
    assert.deepEqual(await bash(path, dir, ["asynctask", "bench", "--wor"]), []);
  });
});

Deno.test({
  name: `completions zsh: the script parses (zsh -n), and Tab offers flags, choices and files${skip(zsh, "zsh")}`,
  ignore: !zsh,
  fn: () =>
    inDir(async (dir) => {
      const path = await script("zsh", dir);
      await lines("zsh", ["-n", path], dir);
      assert.deepEqual(await zshOffers(path, dir, "asynctask serve --wor"), WOR);
      assert.deepEqual(await zshOffers(path, dir, "asynctask serve --dispatch "), [...DISPATCH_MODES].sort());
      assert.deepEqual(await zshOffers(path, dir, "asynctask serve --config ta"), ["tasks.json"]);
      assert.deepEqual(await zshOffers(path, dir, "asynctask "), [
        "bench",
        "cancel",
        "client",
        "completions",
        "pause",
        "resume",
        "retry",
        "serve",
        "status",
        "tasks",
      ]);
      assert.deepEqual(await zshOffers(path, dir, "asynctask bench --spawn -- --dispatch r"), ["round-robin"]);
    }),
});

Deno.test({
  name: `completions fish: the script parses (fish -n), and complete -C offers flags, choices and files${
    skip(fish, "fish")
  }`,
  ignore: !fish,
  fn: () =>
    inDir(async (dir) => {
      const path = await script("fish", dir);
      await lines("fish", ["--no-config", "-n", path], dir);
      assert.deepEqual(await fishOffers(path, dir, "asynctask serve --wor"), WOR);
      assert.deepEqual(await fishOffers(path, dir, "asynctask serve --dispatch "), [...DISPATCH_MODES].sort());
      assert.deepEqual(await fishOffers(path, dir, "asynctask serve --config ta"), ["tasks.json"]);
      assert.deepEqual(await fishOffers(path, dir, "asynctask co"), ["completions"]);
      assert.deepEqual(await fishOffers(path, dir, "asynctask bench --spawn -- --wor"), WOR);
    }),
});

Deno.test("completions with an unknown shell, or none: the usage on stderr, exit 2", async () => {
  for (const args of [["completions", "powershell"], ["completions"], ["completions", "bash", "zsh"]]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, args.join(" "));
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /^asynctask completions: .*\n\nUsage: asynctask completions bash\|zsh\|fish\n/);
  }
  const unknown = await runCli(["completions", "powershell"]);
  assert.match(unknown.stderr, /unknown shell "powershell": choose bash, zsh, fish/);
  const help = await runCli(["completions", "--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: asynctask completions bash\|zsh\|fish\n/);
  const top = await runCli(["--help"]);
  assert.match(top.stdout, /\n {2}completions {2}print a shell completion script: bash, zsh, fish\n/);
});
