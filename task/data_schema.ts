/**
 * Checking a task's data against the JSON Schema its config declares, before the task is
 * accepted. Uses Ajv (JSON Schema draft-07) with ajv-formats, so `format` is checked too.
 *
 * @module
 */
import { Ajv } from "ajv";
import addFormats from "ajv-formats";

// strict: false — a schema may carry keywords Ajv does not know (`examples`, editor hints).
// verbose: errors carry the schema node that failed, so its "description" can explain the rule.
const ajv = new Ajv({ allErrors: false, strict: false, verbose: true });
// "format": "email", "uri", "date-time", … are checked, not ignored. ajv-formats is CommonJS: under
// Deno its function is the module's `default` property (its types say otherwise).
(addFormats as unknown as { default: (a: Ajv) => Ajv }).default(ajv);

/**
 * Compiles `schema` into a check that returns why the data does not match, or `undefined`. When
 * the part of the schema that failed has a `description`, the message ends with it: that is
 * where an operator explains a rule to the people who send tasks.
 *
 * @example
 * ```ts
 * import { compileDataSchema } from "./data_schema.ts";
 * import assert from "node:assert/strict";
 * const check = compileDataSchema({
 *   type: "object",
 *   required: ["to"],
 *   properties: { to: { type: "string", format: "email", description: "the recipient's address" } },
 * });
 * assert.equal(check({}), "data must have required property 'to'");
 * assert.equal(check({ to: "nobody" }), 'data/to must match format "email" — the recipient\'s address');
 * assert.equal(check({ to: "a@b.co" }), undefined);
 * ```
 * @throws {Error} when `schema` is not a valid JSON Schema.
 */
export function compileDataSchema(schema: Record<string, unknown> | boolean): (data: unknown) => string | undefined {
  const validate = ajv.compile(schema);
  return (data) => {
    if (validate(data)) return undefined;
    const first = validate.errors?.[0];
    const text = ajv.errorsText(first ? [first] : validate.errors, { dataVar: "data" });
    const description = (first?.parentSchema as { description?: unknown } | undefined)?.description;
    return typeof description === "string" ? `${text} — ${description}` : text;
  };
}
