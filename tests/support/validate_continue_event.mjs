// Validates against Continue's own zod schemas (npm @continuedev/config-yaml).
//
//   node validate_continue_event.mjs                 event bodies, as a `data:` destination receives them:
//                                                    {name, data, schema, level}, checked with
//                                                    devDataVersionedSchemas[schema][level][name]
//   node validate_continue_event.mjs --data-config   entries of a config.yaml `data:` block (dataSchema),
//                                                    each event name among allDevEventNames
//
// stdin: a JSON array. stdout: a JSON array with one result per item: {"ok": true} or
// {"ok": false, "error": "..."}. The schemas are made strict, so a field Continue would not send
// (or not accept) is an error too.
// Exit status: 0 when every item is valid, 1 when one is not, 2 when the input cannot be read.
import { allDevEventNames, dataSchema, devDataVersionedSchemas } from "@continuedev/config-yaml";

function validateEvent(body) {
  const level = body.level ?? "all";
  const schema = devDataVersionedSchemas[body.schema]?.[level]?.[body.name];
  if (!schema) {
    return { ok: false, error: `no schema for event ${body.name} at version ${body.schema}, level ${level}` };
  }
  const parsed = schema.strict().safeParse(body.data);
  return parsed.success ? { ok: true } : { ok: false, error: parsed.error.toString() };
}

function validateDataConfig(entry) {
  const parsed = dataSchema.strict().safeParse(entry);
  if (!parsed.success) return { ok: false, error: parsed.error.toString() };
  const unknown = (entry.events ?? []).filter((name) => !allDevEventNames.includes(name));
  return unknown.length ? { ok: false, error: `unknown event names: ${unknown.join(", ")}` } : { ok: true };
}

const validate = process.argv.includes("--data-config") ? validateDataConfig : validateEvent;
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => (input += chunk));
process.stdin.on("end", () => {
  let items;
  try {
    items = JSON.parse(input);
    if (!Array.isArray(items)) throw new Error("expected a JSON array");
  } catch (err) {
    process.stderr.write(`${err.message}\n`);
    process.exit(2);
  }
  const results = items.map(validate);
  process.stdout.write(JSON.stringify(results));
  process.exit(results.every((r) => r.ok) ? 0 : 1);
});
