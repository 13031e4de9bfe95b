/**
 * The accept loop under a reset storm: connections reset before the server accepts them make
 * `accept` fail with ENOTCONN, which is one dead connection, not a shortage to back off from.
 * The storm comes from a real socket with SO_LINGER 0 (Python's standard library: Deno cannot set
 * that option), on loopback only, and stops by itself.
 */
import assert from "node:assert/strict";
import { LineClient, startServer } from "./helpers.ts";

const STORM = `
import socket, struct, sys, time
port, seconds = int(sys.argv[1]), float(sys.argv[2])
end, n = time.time() + seconds, 0
while time.time() < end:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    try:
        s.connect(("127.0.0.1", port))
    except OSError:
        pass
    s.close()
    n += 1
print(n)
`;

const python = await new Deno.Command("python3", { args: ["-c", "print(1)"] }).output().then((o) => o.success)
  .catch(() => false);

Deno.test({
  name: python
    ? "a reset storm (connections reset before accept) does not stop the accept loop: /ping answers at once after it"
    : "a reset storm: SKIPPED — python3 is not on this machine (it makes the SO_LINGER 0 resets)",
  ignore: !python,
  async fn() {
    const server = await startServer({ defaultTask: "echo" });
    try {
      const storm = await new Deno.Command("python3", {
        args: ["-c", STORM, String(server.addr.port), "2"],
        stdout: "piped",
      }).output();
      const resets = Number(new TextDecoder().decode(storm.stdout).trim());
      assert.ok(resets > 100, `the storm made ${resets} connections`);
      // Before the fix, each reset in the backlog cost a backoff of up to 1 s: minutes of silence.
      const c = await LineClient.connect(server.addr.port);
      try {
        await c.send("/ping");
        assert.equal(await c.next(3000), "PONG");
      } finally {
        await c.close();
      }
    } finally {
      await server.shutdown(5000);
    }
  },
});
