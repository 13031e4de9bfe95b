import assert from "node:assert/strict";
import { type FlagSpec, parseFlags, suggest, UsageError } from "./flags.ts";

const SPECS: FlagSpec[] = [
  { name: "port", kind: "int", default: 9501, min: 0, max: 65535, help: "port" },
  { name: "delay", kind: "duration", default: 5000, help: "delay" },
  { name: "mode", kind: "string", default: "a", choices: ["a", "b"], help: "mode" },
  { name: "send", kind: "list", help: "payloads" },
  { name: "json", kind: "boolean", help: "json" },
  { name: "token", kind: "string", env: "TEST_TOKEN", help: "token" },
  { name: "config", kind: "string", help: "config" },
];

Deno.test("parseFlags: defaults, conversions, repeatable flags", () => {
  const f = parseFlags("x", SPECS, ["--delay", "250ms", "--send", "a", "--send", "b", "--json"], {
    env: () => undefined,
  });
  assert.equal(f.num("port"), 9501);
  assert.equal(f.num("delay"), 250);
  assert.deepEqual(f.list("send"), ["a", "b"]);
  assert.equal(f.bool("json"), true);
  assert.equal(f.str("token"), undefined);
});

Deno.test("parseFlags: precedence is command line, then environment, then config file, then default", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/c.json`;
  await Deno.writeTextFile(path, JSON.stringify({ port: 7000, token: "from-config", delay: 100, mode: "b" }));
  try {
    const env = (n: string) => (n === "TEST_TOKEN" ? "from-env" : undefined);
    const f = parseFlags("x", SPECS, ["--config", path, "--mode", "a"], { env });
    assert.equal(f.num("port"), 7000, "config over default");
    assert.equal(f.str("token"), "from-env", "environment over config");
    assert.equal(f.str("mode"), "a", "command line over config");
    assert.equal(f.num("delay"), 100, "a bare number in a config file is milliseconds");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseFlags: mistakes are UsageErrors that name the flag", () => {
  const bad: [string[], RegExp][] = [
    [["--prot", "1"], /unknown flag --prot — did you mean --port\?/],
    [["--port", "x"], /--port: "x" is not a whole number/],
    [["--port=-5"], /--port: -5 is below the minimum 0/],
    [["--port", "-5"], /--port needs a value; one that starts with "-" is written --port=-…/],
    [["--mode", "c"], /--mode: "c" is not one of a, b/],
    [["--delay"], /--delay needs a value, e\.g\. --delay 5s/],
    [["--port", "99999999999999999999"], /out of range/],
  ];
  for (const [args, re] of bad) {
    assert.throws(() => parseFlags("x", SPECS, args, { env: () => undefined }), (e: Error) => {
      assert.ok(e instanceof UsageError);
      assert.match(e.message, re);
      return true;
    });
  }
});

Deno.test("suggest finds near misses only", () => {
  assert.equal(suggest("wrokers", ["workers", "port"]), "workers");
  assert.equal(suggest("zzzzzz", ["workers", "port"]), undefined);
});
