/**
 * The soak's /ping prober, in its own worker thread so that the flood's reply parsing in the main
 * thread does not delay it: every 100 ms it opens a fresh connection, sends `/ping`, and reports
 * the time to `PONG` (or -1 for a failure) to its parent, until the parent terminates it.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";

const { port } = workerData as { port: number };
const enc = new TextEncoder();
while (true) {
  const t0 = performance.now();
  let ms = -1;
  try {
    const c = await Deno.connect({ hostname: "127.0.0.1", port });
    await c.write(enc.encode("/ping\n"));
    const buf = new Uint8Array(64);
    const n = await c.read(buf);
    c.close();
    if (n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("PONG")) ms = performance.now() - t0;
  } catch {
    // counted as a failure
  }
  parentPort!.postMessage(ms);
  await new Promise((r) => setTimeout(r, 100));
}
