/**
 * The token in /proc/<pid>/environ: a process that called `hideFromSameUser()` cannot have its
 * environment read by another process of the same (non-root) user — a command task, say. Real
 * processes, each run as `nobody` with setpriv; root itself can always read it.
 */
import assert from "node:assert/strict";
import { ROOT } from "./helpers.ts";

const setpriv = await new Deno.Command("setpriv", { args: ["--version"], stdout: "null", stderr: "null" }).output()
  .then((o) => o.success, () => false);
const root = Deno.uid() === 0;
const why = Deno.build.os !== "linux"
  ? "not Linux"
  : !root
  ? "not root (it runs both processes as nobody)"
  : !setpriv
  ? "setpriv (util-linux) is missing"
  : "";
const AS_NOBODY = ["--reuid=65534", "--regid=65534", "--clear-groups"];

/** Starts the fixture as nobody with a secret in its environment; returns its pid and a stop function. */
async function secretHolder(hide: boolean, denoDir: string): Promise<{ pid: number; stop: () => Promise<void> }> {
  const child = new Deno.Command("setpriv", {
    args: [
      ...AS_NOBODY,
      Deno.execPath(),
      "run",
      "--allow-ffi",
      `${ROOT}tests/fixtures/hidden_env.ts`,
      hide ? "hide" : "show",
    ],
    env: { DENO_DIR: denoDir, HOME: denoDir, SECRET_TOKEN: "s3cret-in-env", NO_COLOR: "1" },
    clearEnv: true,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.getReader();
  const { value } = await reader.read();
  assert.equal(new TextDecoder().decode(value).trim(), "ready");
  reader.releaseLock();
  return {
    pid: child.pid,
    stop: async () => {
      child.kill("SIGKILL");
      await child.status;
      await child.stdout.cancel();
    },
  };
}

/** What `nobody` reads of the process's environment: its text, or the error. */
async function readAsNobody(pid: number): Promise<string> {
  const out = await new Deno.Command("setpriv", { args: [...AS_NOBODY, "cat", `/proc/${pid}/environ`] }).output();
  return out.success ? new TextDecoder().decode(out.stdout) : `error: ${new TextDecoder().decode(out.stderr)}`;
}

Deno.test({
  name: why
    ? `hideFromSameUser(): SKIPPED — ${why}`
    : "hideFromSameUser() hides a process's environment (the token) from its user's other processes",
  ignore: why !== "",
  async fn() {
    const denoDir = await Deno.makeTempDir();
    await Deno.chmod(denoDir, 0o777);
    try {
      const shown = await secretHolder(false, denoDir);
      try {
        assert.match(await readAsNobody(shown.pid), /SECRET_TOKEN=s3cret-in-env/, "without it, the same user reads it");
      } finally {
        await shown.stop();
      }
      const hidden = await secretHolder(true, denoDir);
      try {
        const seen = await readAsNobody(hidden.pid);
        assert.doesNotMatch(seen, /s3cret-in-env/);
        assert.match(seen, /Permission denied/);
      } finally {
        await hidden.stop();
      }
    } finally {
      await Deno.remove(denoDir, { recursive: true });
    }
  },
});
