/**
 * The journal's own thread: it owns the SQLite connection, so that a commit's fsync (0.3–0.5 ms
 * each with `--journal-sync full`, measured) never blocks the thread that accepts, reads and
 * answers. Requests come from {@linkcode JournalClient} (`client.ts`), one at a time per
 * kind, and each gets one reply with the same id.
 *
 * @module
 */
import { parentPort } from "node:worker_threads";
import { Journal, JournalDamagedError, JournalError } from "./file.ts";
import { unpack } from "./batch.ts";
import type { JournalReply, JournalRequest } from "./client.ts";

const port = parentPort!;
let journal: Journal | undefined;

function handle(req: JournalRequest): unknown {
  switch (req.type) {
    case "open":
      journal = Journal.open(req.path, req.sync, req.reset);
      return journal.warnings;
    case "load":
      return journal!.load(req.since, req.failedSince);
    case "write":
      journal!.write(unpack(req.batch));
      return null;
    case "sweep":
      journal!.sweep(req.before, req.keep, req.failedBefore);
      return null;
    case "close":
      journal?.close();
      journal = undefined;
      return null;
  }
}

// The global "message" event, not `port.on("message")`, which walks every value of every batch
// looking for MessagePorts (as much CPU as the SQLite inserts, measured with --cpu-prof).
globalThis.addEventListener("message", (e) => {
  const req = (e as MessageEvent<JournalRequest>).data;
  let reply: JournalReply;
  try {
    reply = { id: req.id, ok: true, value: handle(req) };
  } catch (e) {
    const error = e instanceof JournalDamagedError ? "damaged" : e instanceof JournalError ? "journal" : "other";
    reply = { id: req.id, ok: false, message: e instanceof Error ? e.message : String(e), error };
  }
  port.postMessage(reply);
  // The file is closed: end the thread (after the reply has gone).
  if (req.type === "close") setTimeout(() => (globalThis as unknown as { close(): void }).close(), 0);
});
