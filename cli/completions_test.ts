import assert from "node:assert/strict";
import { type CompletedProgram, completionScript, runCompletions, SHELLS, takesFile } from "./completions.ts";

/** A small program: a hyphenated name, a short flag that takes a value, a repeatable file flag, `--` and words. */
const PROGRAM: CompletedProgram = {
  name: "my-tool",
  flags: [{ name: "help", kind: "boolean", short: "h", help: "show this help" }],
  commands: [
    {
      name: "run",
      help: "run it: now",
      flags: [
        { name: "mode", kind: "string", short: "m", choices: ["fast", "safe"], help: "how [to] run; it's 'quoted'" },
        { name: "input", kind: "list", valueName: "path", help: "read this (repeatable)" },
        { name: "limit", kind: "size", help: "at most this much" },
        { name: "dry", kind: "boolean", help: "change nothing" },
      ],
    },
    {
      name: "wrap",
      help: "run the run command under a timer",
      flags: [{ name: "every", kind: "duration", help: "how often" }],
      words: ["first", "second"],
      dashDashFlagsOf: "run",
    },
  ],
};

async function has(cmd: string): Promise<boolean> {
  try {
    return (await new Deno.Command(cmd, { args: ["-c", "true"], stdout: "null", stderr: "null" }).output()).success;
  } catch {
    return false;
  }
}

/** What the bash script of PROGRAM offers for `words`, in `cwd`. */
async function bash(words: string[], cwd = "/"): Promise<string[]> {
  const script = completionScript("bash", PROGRAM);
  const call = `${script}\nCOMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _my_tool; printf '%s\\n' "\${COMPREPLY[@]}"`;
  const out = await new Deno.Command("bash", {
    args: ["--norc", "--noprofile", "-c", call, "bash", ...words],
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(new TextDecoder().decode(out.stderr), "");
  return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l !== "").sort();
}

const bashHere = await has("bash");

Deno.test({
  name:
    `bash: choices after a short or long flag, files after a file flag, words, and another command's flags after --${
      bashHere ? "" : " — SKIPPED: bash is not installed"
    }`,
  ignore: !bashHere,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(`${dir}/in put.txt`, "");
      assert.deepEqual(await bash(["my-tool", ""]), ["--help", "-h", "run", "wrap"]);
      assert.deepEqual(await bash(["my-tool", "run", "-m", ""]), ["fast", "safe"]);
      assert.deepEqual(await bash(["my-tool", "run", "--mode", "=", "s"]), ["safe"]);
      assert.deepEqual(await bash(["my-tool", "run", "--input", "in"], dir), ["in put.txt"], "a name with a space");
      assert.deepEqual(await bash(["my-tool", "run", "--limit", ""]), []);
      assert.deepEqual(await bash(["my-tool", "run", "--d"]), ["--dry"]);
      assert.deepEqual(await bash(["my-tool", "wrap", ""]), ["--", "--every", "first", "second"]);
      assert.deepEqual(await bash(["my-tool", "wrap", "--", "--m"]), ["--mode"]);
      assert.deepEqual(await bash(["my-tool", "run", "--", "--m"]), [], "run takes nothing after --");
      assert.deepEqual(await bash(["my-tool", "nosuch", "--"]), []);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

for (const shell of SHELLS) {
  const here = await has(shell);
  Deno.test({
    name: `${shell}: the script parses (${shell} -n), help texts with quotes, brackets and colons included${
      here ? "" : ` — SKIPPED: ${shell} is not installed`
    }`,
    ignore: !here,
    async fn() {
      const dir = await Deno.makeTempDir();
      try {
        await Deno.writeTextFile(`${dir}/script`, completionScript(shell, PROGRAM));
        const out = await new Deno.Command(shell, { args: ["-n", `${dir}/script`], stderr: "piped" }).output();
        assert.ok(out.success, new TextDecoder().decode(out.stderr));
      } finally {
        await Deno.remove(dir, { recursive: true });
      }
    },
  });
}

Deno.test("zsh and fish scripts carry each flag's help, escaped for the shell", () => {
  const zsh = completionScript("zsh", PROGRAM);
  assert.match(zsh, /^#compdef my-tool\n/);
  assert.ok(
    zsh.includes(String.raw`'(-m --mode)'{-m,--mode}'=[how \[to\] run; it'\''s '\''quoted'\'']:mode:(fast safe)'`),
  );
  assert.ok(zsh.includes(`'*--input=[read this (repeatable)]:path:_files'`));
  assert.ok(zsh.includes(String.raw`'run:run it\: now'`));
  const fish = completionScript("fish", PROGRAM);
  assert.ok(fish.includes(String.raw`-s m -l mode -x -a 'fast safe' -d 'how [to] run; it\'s \'quoted\''`));
  assert.ok(fish.includes(`-l input -r -F -d 'read this (repeatable)'`));
});

Deno.test("a flag, choice or word that is not plain text is refused, not written into a script", () => {
  const bad: CompletedProgram = {
    name: "x",
    flags: [],
    commands: [{ name: "a", help: "", flags: [{ name: "m", kind: "string", choices: ["$(reboot)"], help: "" }] }],
  };
  for (const shell of SHELLS) assert.throws(() => completionScript(shell, bad), /cannot complete "\$\(reboot\)"/);
});

Deno.test("takesFile: a value named path or like a file name", () => {
  const spec = (valueName?: string, kind: "string" | "list" | "int" = "string") => ({
    name: "f",
    kind,
    help: "",
    valueName,
  });
  assert.deepEqual(
    [
      spec("path"),
      spec("file.json"),
      spec("ca.pem", "list"),
      spec("addr"),
      spec("name"),
      spec(),
      spec("file.db", "int"),
    ]
      .map(takesFile),
    [true, true, true, false, false, false, false],
  );
});

Deno.test("runCompletions: the script on stdout; --help; a missing, unknown or extra shell is a usage error (2)", () => {
  const run = (args: string[]) => {
    const out: { stdout: string; stderr: string } = { stdout: "", stderr: "" };
    const code = runCompletions(args, PROGRAM, (text, to) => out[to] += text);
    return { code, ...out };
  };
  const ok = run(["fish"]);
  assert.deepEqual([ok.code, ok.stderr], [0, ""]);
  assert.equal(ok.stdout, completionScript("fish", PROGRAM));
  const help = run(["--help"]);
  assert.deepEqual([help.code, help.stderr], [0, ""]);
  assert.match(help.stdout, /^Usage: my-tool completions bash\|zsh\|fish\n/);
  for (
    const [args, why] of [
      [["tcsh"], 'unknown shell "tcsh": choose bash, zsh, fish'],
      [[], "name a shell"],
      [["bash", "zsh"], "one shell only, not 2 arguments"],
    ] as const
  ) {
    const r = run([...args]);
    assert.deepEqual([r.code, r.stdout], [2, ""]);
    assert.ok(
      r.stderr.startsWith(`my-tool completions: ${why}\n\nUsage: my-tool completions bash|zsh|fish\n`),
      r.stderr,
    );
  }
});
