import assert from "node:assert/strict";
import { connectHost, HttpAddressError, parseHttpAddress, urlHost } from "./address.ts";

Deno.test("parseHttpAddress: [HOST:]PORT, IPv6 in brackets, and what it refuses, with the fix", () => {
  assert.deepEqual(parseHttpAddress("8080"), { hostname: "127.0.0.1", port: 8080 });
  assert.deepEqual(parseHttpAddress(" 0 "), { hostname: "127.0.0.1", port: 0 });
  assert.deepEqual(parseHttpAddress("localhost:9"), { hostname: "localhost", port: 9 });
  assert.deepEqual(parseHttpAddress("[::]:443"), { hostname: "::", port: 443 });
  for (
    const [bad, why] of [
      ["", "the port is not a number"],
      ["host", "the port is not a number"],
      [":80", "the host is empty"],
      ["::1:80", "an IPv6 address goes in brackets"],
      ["1.2.3.4:65536", "the port is above 65535"],
      ["1.2.3.4:-1", "the port is not a number"],
      ["80x", "the port is not a number"],
    ]
  ) {
    assert.throws(() => parseHttpAddress(bad), (e: Error) => {
      assert.ok(e instanceof HttpAddressError);
      assert.equal(
        e.message,
        `--http "${bad}": ${why}; give [HOST:]PORT, e.g. --http 9090 (127.0.0.1), --http 0.0.0.0:9090 or --http [::1]:9090`,
      );
      return true;
    });
  }
});

Deno.test("connectHost and urlHost: a wildcard listener is reached on loopback; IPv6 goes in brackets", () => {
  assert.equal(connectHost("0.0.0.0"), "127.0.0.1");
  assert.equal(connectHost("::"), "::1");
  assert.equal(connectHost("192.0.2.7"), "192.0.2.7");
  assert.equal(urlHost("::1", 80), "[::1]:80");
  assert.equal(urlHost("127.0.0.1", 80), "127.0.0.1:80");
});
