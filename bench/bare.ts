/**
 * The bare line responder of the benchmark suite: the floor of what a Deno TCP line server costs.
 * It answers every line at once with `ACCEPTED <n>` and `DONE <n>` — no workers, no queue, no
 * protocol parsing, no bookkeeping — with one `write` per `read`. `asynctask` is measured against
 * it with the same load generator in the same run.
 *
 * ```sh
 * deno run -A bench/bare.ts --port 0    # prints "listening on 127.0.0.1:<port>"
 * ```
 *
 * @module
 */
import { parseArgs } from "node:util";

const { values } = parseArgs({ options: { port: { type: "string", default: "9601" } } });
const listener = Deno.listen({ hostname: "127.0.0.1", port: Number(values.port) });
console.log(`listening on 127.0.0.1:${listener.addr.port}`);
const enc = new TextEncoder();
let nextId = 0;

async function serve(conn: Deno.TcpConn): Promise<void> {
  conn.setNoDelay(true);
  const buf = new Uint8Array(64 * 1024);
  try {
    while (true) {
      const n = await conn.read(buf);
      if (n === null) break;
      let out = "";
      for (let i = 0; i < n; i++) {
        if (buf[i] === 10) {
          const id = ++nextId;
          out += `ACCEPTED ${id} ok\nDONE ${id} x\n`;
        }
      }
      const data = enc.encode(out);
      for (let at = 0; at < data.length;) at += await conn.write(data.subarray(at));
    }
  } catch {
    // reset
  }
  try {
    conn.close();
  } catch {
    // closed
  }
}

Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
for await (const conn of listener) serve(conn);
