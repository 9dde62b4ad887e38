// Parses a Mermaid file with Mermaid's own parser (jsdom supplies the DOM it expects).
// Usage: node mermaid_check.mjs FILE  -> prints "ok <diagram type>" or the parse error, exit 1.
import { JSDOM } from "jsdom";
import { readFileSync } from "fs";
const dom = new JSDOM("<!DOCTYPE html><body></body>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
try {
  const r = await mermaid.parse(readFileSync(process.argv[2], "utf8"));
  console.log("ok", r.diagramType);
} catch (e) {
  console.log("error", e.message);
  process.exit(1);
}
