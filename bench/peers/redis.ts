/**
 * A redis-server for the benchmark rows that need one (BullMQ, the broker): started on a given
 * loopback port with no persistence in a temp dir, and read with inline commands (`INFO
 * commandstats` for the commands per task).
 *
 * @module
 */
import { type Child, startChild, waitForPort, which } from "./common.ts";

/** Starts `redis-server` on 127.0.0.1:`port`, keeping nothing on disk (its dir is `dir`), and waits until it answers. */
export async function startRedis(port: number, dir: string): Promise<Child> {
  const redis = await startChild(
    [
      which("redis-server")!,
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      "no",
      "--daemonize",
      "no",
    ],
    /Ready to accept connections/,
  );
  await waitForPort(port);
  return redis;
}

/** Sends one inline command to Redis and returns the reply's text (enough for +OK and INFO). */
export async function redisCommand(port: number, command: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(new TextEncoder().encode(`${command}\r\n`));
    const buf = new Uint8Array(64 * 1024);
    let text = "";
    const dec = new TextDecoder();
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      text += dec.decode(buf.subarray(0, n), { stream: true });
      if (text.startsWith("+") || text.startsWith("-")) {
        if (text.includes("\r\n")) break;
      } else if (text.startsWith("$")) {
        const eol = text.indexOf("\r\n");
        if (eol > 0 && text.length >= eol + 2 + Number(text.slice(1, eol)) + 2) break;
      }
    }
    if (text.startsWith("-")) throw new Error(`redis: ${text.trim()}`);
    return text;
  } finally {
    conn.close();
  }
}

/** The total of `calls=` over `INFO commandstats` (commands run by scripts included). */
export async function redisCalls(port: number): Promise<number> {
  const info = await redisCommand(port, "INFO commandstats");
  let calls = 0;
  for (const m of info.matchAll(/calls=(\d+)/g)) calls += Number(m[1]);
  return calls;
}
