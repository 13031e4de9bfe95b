/**
 * The server's public face: what `main.ts`, the tests and embedding programs use.
 *
 * - {@linkcode TaskServer}: start, stop, reload a server (`server.ts`)
 * - {@linkcode ServeOptions} and their defaults, declared once in `options.ts`
 * - `runServe`: the `asynctask serve` command (`cli.ts`)
 * - the {@linkcode TaskStore} interface and its stores (`store/`)
 *
 * @example
 * ```ts
 * import { DEFAULT_SERVE_OPTIONS, TaskServer } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const server = await TaskServer.start({ ...DEFAULT_SERVE_OPTIONS, port: 0, workers: 1 });
 * const conn = await Deno.connect({ port: server.addr.port });
 * await conn.write(new TextEncoder().encode("/ping\n"));
 * const buf = new Uint8Array(16);
 * const n = await conn.read(buf);
 * assert.equal(new TextDecoder().decode(buf.subarray(0, n!)), "PONG\n");
 * conn.close();
 * await server.shutdown(1000);
 * ```
 *
 * @module
 */
export { type ServerHooks, type ShutdownReport, TaskServer } from "./server.ts";
export { StartError } from "./errors.ts";
export { DEFAULT_SERVE_OPTIONS, SERVE_OPTIONS, type ServeOptions } from "./options.ts";
export { runServe, SAME_SIGNAL_MS, serveOptions } from "./cli.ts";
export { MAX_INTERRUPTED_RUNS, retryDelay } from "./lifecycle.ts";
export type { ServerStats, TaskCounts } from "./stats.ts";
export type { AcceptedTask, Recovered, TaskEnd, TaskStore } from "./store/store.ts";
export { MemoryStore } from "./store/memory.ts";
export { JournalDamagedError, JournalError, JournalStore } from "./store/journal.ts";
