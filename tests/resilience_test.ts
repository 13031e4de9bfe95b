/**
 * The server keeps serving through trouble that is not its clients' fault.
 */
import assert from "node:assert/strict";
import { eventually, LineClient, spawnServe } from "./helpers.ts";

Deno.test("out of file descriptors: accept errors are logged and retried; once connections close, new ones are served", async () => {
  const server = await spawnServe(["--workers", "1"], undefined, { maxFiles: 64 });
  const flood: Deno.TcpConn[] = [];
  try {
    // More connections than the server has descriptors for: the kernel still completes them (backlog),
    // but the server's accept() fails with EMFILE until some close.
    for (let i = 0; i < 100; i++) flood.push(await Deno.connect({ hostname: "127.0.0.1", port: server.port }));
    const deadline = Date.now() + 10_000;
    while (!/cannot accept a connection: .*retrying in/.test(server.log())) {
      if (Date.now() > deadline) throw new Error(`no accept error logged:\n${server.log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const c of flood.splice(0)) c.close();
    const c = await LineClient.connect(server.port);
    try {
      await c.send("/ping", "/task echo still here");
      assert.deepEqual(await c.take(3, 15_000), ["PONG", "ACCEPTED 1 echo queued", "DONE 1 still here"]);
    } finally {
      await c.close();
    }
  } finally {
    for (const c of flood) c.close();
    server.child.kill("SIGTERM");
    const { code, log } = await server.exited();
    assert.equal(code, 0, log);
  }
});

/** The thread ids of process `pid` (Linux /proc). */
function threadIds(pid: number): string[] {
  return [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => e.name);
}

/** A thread's niceness (field 19 of its stat); 0 for a thread that has ended meanwhile. */
function threadNice(pid: number, tid: string | number): number {
  try {
    return Number(Deno.readTextFileSync(`/proc/${pid}/task/${tid}/stat`).split(") ")[1].split(" ")[16]);
  } catch {
    return 0;
  }
}

Deno.test("--worker-nice: the worker threads run at a lower CPU priority than the main thread (Linux)", async () => {
  const server = await spawnServe(["--workers", "2", "--worker-nice", "7"]);
  try {
    const pid = server.child.pid;
    const niceOf = (tid: string) => threadNice(pid, tid);
    const tids = () => threadIds(pid);
    await eventually("two threads at nice 7", () => tids().filter((t) => niceOf(t) === 7).length === 2);
    assert.equal(niceOf(String(pid)), 0, "the main thread keeps the normal priority");
  } finally {
    server.child.kill("SIGTERM");
    const { code, log } = await server.exited();
    assert.equal(code, 0, log);
  }
});

Deno.test("a worker blocked past its task's timeout drops to the lowest CPU priority until it is replaced (Linux)", async () => {
  const server = await spawnServe([
    "--workers",
    "1",
    "--worker-nice",
    "0",
    "--task-timeout",
    "300ms",
    "--module",
    new URL("./fixtures/handlers.ts", import.meta.url).pathname,
  ]);
  const c = await LineClient.connect(server.port);
  try {
    const pid = server.child.pid;
    const niceOf = (tid: string) => threadNice(pid, tid);
    const tids = () => threadIds(pid);
    assert.ok(tids().every((t) => niceOf(t) === 0), "with --worker-nice 0 every thread starts at 0");
    await c.send("/task hang x"); // spins without yielding: the abort at 300 ms goes unanswered
    await eventually("the blocked worker's thread at nice 19", () => tids().some((t) => niceOf(t) === 19), 5000);
    assert.match(await c.next(), /^ACCEPTED 1/);
    assert.match(await c.next(), /^FAILED 1 timeout/);
  } finally {
    await c.close();
    server.child.kill("SIGTERM");
    await server.exited();
  }
});
