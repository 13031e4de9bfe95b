import assert from "node:assert/strict";
import { oneLine, parseRequest, reply } from "./protocol.ts";

Deno.test("parseRequest: text payloads, commands, blank lines", () => {
  assert.equal(parseRequest("   "), undefined);
  assert.deepEqual(parseRequest(" 138 0013 8000 "), {
    kind: "submit",
    format: "text",
    task: undefined,
    data: "138 0013 8000",
  });
  assert.deepEqual(parseRequest("/task echo a b"), { kind: "submit", format: "text", task: "echo", data: "a b" });
  assert.deepEqual(parseRequest("/status 17"), { kind: "status", format: "text", taskId: 17 });
  assert.deepEqual(parseRequest("/ping"), { kind: "ping", format: "text" });
  assert.deepEqual(parseRequest("/auth s3cret"), { kind: "auth", format: "text", token: "s3cret" });
  assert.equal(parseRequest("/stats now")?.kind, "invalid");
  assert.equal(parseRequest("/status 0")?.kind, "invalid");
  assert.equal(parseRequest("/status 99999999999999999")?.kind, "invalid");
});

Deno.test("parseRequest: JSON requests and commands, with the client's tag", () => {
  assert.deepEqual(parseRequest('{"task":"sms","data":{"phone":"1"},"id":5}'), {
    kind: "submit",
    format: "json",
    task: "sms",
    data: { phone: "1" },
    tag: 5,
  });
  assert.deepEqual(parseRequest('  {"cmd":"status","task_id":3,"id":"q"}'), {
    kind: "status",
    format: "json",
    taskId: 3,
    tag: "q",
  });
  const bad = parseRequest('{"task":"sms","id":1e999}');
  assert.equal(bad?.kind === "invalid" && bad.code, "bad_request");
  // An id is echoed in every reply: at most 256 characters.
  const longest = "i".repeat(256);
  assert.deepEqual(parseRequest(JSON.stringify({ task: "echo", id: longest })), {
    kind: "submit",
    format: "json",
    task: "echo",
    data: null,
    tag: longest,
  });
  assert.deepEqual(parseRequest(JSON.stringify({ task: "echo", id: longest + "i" })), {
    kind: "invalid",
    format: "json",
    code: "bad_request",
    message: '"id" must be a string of at most 256 characters or a finite number',
  });
  const notObject = parseRequest("{");
  assert.equal(notObject?.kind === "invalid" && notObject.code, "bad_json");
  const deep = parseRequest('{"data":' + "[".repeat(100_000) + "]".repeat(100_000) + "}");
  assert.deepEqual(deep, {
    kind: "invalid",
    format: "json",
    code: "bad_request",
    message: "the request nests deeper than 64 levels",
  });
  assert.equal(parseRequest('{"data":' + "[".repeat(63) + "]".repeat(63) + "}")?.kind, "submit", "64 levels are fine");
  // An unknown field's error names every field a task request may have.
  assert.deepEqual(parseRequest('{"task":"email","to":"a@b.c"}'), {
    kind: "invalid",
    format: "json",
    code: "bad_request",
    message: 'unknown field "to"; a task request has "task", "data", "id", "priority", "delay", "run_at" and ' +
      '"unique_key", a command has "cmd"',
  });
  for (const field of ["priority", "delay", "run_at", "unique_key"]) {
    assert.equal(parseRequest(JSON.stringify({ task: "echo", [field]: "x" }))?.kind, "submit", field);
  }
});

Deno.test("replies: text and JSON forms as PROTOCOL.md states them", () => {
  assert.equal(reply.accepted("text", 1, undefined, "queued"), "ACCEPTED 1 queued");
  assert.equal(
    reply.done("text", 1, undefined, JSON.stringify("a\nb"), { worker: 1, attempts: 1, ms: 3 }),
    "DONE 1 a\\nb",
  );
  assert.equal(reply.done("text", 1, undefined, '{"x":1}', { worker: 1, attempts: 1, ms: 3 }), 'DONE 1 {"x":1}');
  assert.equal(
    reply.done("json", 1, "t", "null", { worker: 2, attempts: 1, ms: 3 }),
    '{"type":"done","id":"t","task_id":1,"result":null,"worker":2,"attempts":1,"ms":3}',
  );
  assert.equal(reply.failed("text", 2, undefined, "timeout", "too slow", { attempts: 3 }), "FAILED 2 timeout too slow");
  assert.equal(
    reply.error("json", 9, "queue_full", "full"),
    '{"type":"error","id":9,"error":{"code":"queue_full","message":"full"}}',
  );
  assert.equal(
    reply.status("text", undefined, 4, "failed", { error: { code: "timeout", message: "x" } }),
    "STATUS 4 failed timeout x",
  );
  assert.equal(reply.status("text", undefined, 4, "unknown"), "STATUS 4 unknown");
  assert.equal(oneLine(undefined), "null");
});

Deno.test("parseRequest() splits /task lines the same way whether or not they take the usual path", () => {
  const submit = (task: string, data: string) => ({ kind: "submit", format: "text", task, data });
  assert.deepEqual(parseRequest("/task echo x"), submit("echo", "x"));
  assert.deepEqual(parseRequest("/task echo\tx"), submit("echo", "x"));
  assert.deepEqual(parseRequest("/task echo  x"), submit("echo", "x"));
  assert.deepEqual(parseRequest("/task é x"), submit("é", "x"));
  assert.deepEqual(parseRequest("/task echo"), submit("echo", ""));
});
