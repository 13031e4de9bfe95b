/**
 * Keeps the server's secrets from processes of the same user. On Linux the kernel shows a
 * process's initial environment in `/proc/<pid>/environ` to every process of its user — command
 * tasks among them — and removing a variable later (`Deno.env.delete`) does not change that copy.
 * A process that is not "dumpable" (`prctl(PR_SET_DUMPABLE, 0)`) has its `/proc` entries owned by
 * root instead: its environment and memory are then hidden from its own user's other processes.
 * (It also cannot be attached to with a debugger, or dump core, but by root.)
 *
 * @module
 */

/** `prctl`'s option that sets whether a process may be dumped (and read through /proc by its user). */
const PR_SET_DUMPABLE = 4;

/**
 * Makes this process not dumpable. Returns `undefined` when done, else why not (not Linux, no
 * `--allow-ffi`, no libc).
 *
 * @example
 * ```ts ignore
 * const why = hideFromSameUser();
 * if (why) console.warn(`the token stays readable in /proc/${Deno.pid}/environ: ${why}`);
 * ```
 */
export function hideFromSameUser(): string | undefined {
  if (Deno.build.os !== "linux") return `not on Linux (${Deno.build.os})`;
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return "this process may not call the C library (start it with --allow-ffi; deno task serve has it)";
  }
  try {
    const libc = Deno.dlopen("libc.so.6", {
      prctl: { parameters: ["i32", "usize", "usize", "usize", "usize"], result: "i32" },
    });
    try {
      const r = libc.symbols.prctl(PR_SET_DUMPABLE, 0n, 0n, 0n, 0n);
      return r === 0 ? undefined : `prctl(PR_SET_DUMPABLE) returned ${r}`;
    } finally {
      libc.close();
    }
  } catch (e) {
    return `cannot call prctl: ${e instanceof Error ? e.message : String(e)}`;
  }
}
