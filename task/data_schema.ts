/**
 * Checking a task's data against the JSON Schema its config declares, before the task is
 * accepted. Uses Ajv (JSON Schema draft-07) with ajv-formats, so `format` is checked too.
 *
 * @module
 */
import { Ajv } from "ajv";
import addFormats from "ajv-formats";

// strict: false — a schema may carry keywords Ajv does not know (`examples`, editor hints).
const ajv = new Ajv({ allErrors: false, strict: false });
// "format": "email", "uri", "date-time", … are checked, not ignored. ajv-formats is CommonJS: under
// Deno its function is the module's `default` property (its types say otherwise).
(addFormats as unknown as { default: (a: Ajv) => Ajv }).default(ajv);

/**
 * Compiles `schema` into a check that returns why the data does not match, or `undefined`.
 *
 * @example
 * ```ts
 * import { compileDataSchema } from "./data_schema.ts";
 * const check = compileDataSchema({ type: "object", required: ["to"] });
 * console.log(check({})); // "data must have required property 'to'"
 * console.log(check({ to: "a@b.c" })); // undefined
 * ```
 * @throws {Error} when `schema` is not a valid JSON Schema.
 */
export function compileDataSchema(schema: Record<string, unknown> | boolean): (data: unknown) => string | undefined {
  const validate = ajv.compile(schema);
  return (data) => validate(data) ? undefined : ajv.errorsText(validate.errors, { dataVar: "data" });
}
