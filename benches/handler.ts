// Latency the plugin adds to every tool result: the `tool_result` handler of
// the built bundle (dist/index.js, wasm inlined) on ~100 KB of tool output.
//
//   bun benches/handler.ts LOG [--runs 2000] [--kb 100] [--json OUT]
//
// The handler is taken from the bundle itself: the plugin's factory is called
// with a stand-in for OMP's `pi` that records `pi.on` handlers, so the timed
// call is exactly what OMP calls. The content is `[{type: "text", text}]` with
// `text` a ~100 KB slice of the redact_bench log (64 slices, cycled; some hold
// planted secrets). The baseline in the same run is the JS RegExp rule set
// (baseline-patterns.json) over the same text; `redactText` on the same text
// (the shim's wrapper, as the handler calls wasm) shows what the handler adds
// around the redaction itself. Prints p50/p99/max; asserts nothing.
import { arg, logPathOrUsage } from "./args.ts";

const root = new URL("..", import.meta.url).pathname;

const logPath = logPathOrUsage("bun benches/handler.ts LOG [--runs N] [--kb N] [--json OUT]");
const runs = Number(arg("--runs", "2000"));
const kb = Number(arg("--kb", "100"));
const jsonOut = arg("--json", "");

type Handler = (event: unknown, ctx: unknown) => unknown;
const handlers = new Map<string, Handler>();
const pi = {
	on(event: string, handler: Handler) {
		handlers.set(event, handler);
	},
	registerTool() {},
	registerCommand() {},
};
const loadStart = Bun.nanoseconds();
const plugin = await import(`${root}dist/index.js`);
plugin.default(pi);
const loadMs = (Bun.nanoseconds() - loadStart) / 1e6;
const handler = handlers.get("tool_result");
if (!handler) {
	console.error("the bundle registered no tool_result handler (OMP_DISCORD_REDACT_TOOL_RESULTS off?)");
	process.exit(1);
}

// 64 slices of ~kb KB each, cut at line ends, spread over the log.
const log = await Bun.file(logPath).text();
const slices: string[] = [];
for (let i = 0; i < 64; i++) {
	let start = Math.floor((i * (log.length - kb * 2048)) / 64);
	start = log.indexOf("\n", start) + 1;
	let end = log.indexOf("\n", start + kb * 1024);
	if (end < 0) end = log.length;
	slices.push(log.slice(start, end));
}
const ctx = { mode: "print", hasUI: false, cwd: root, ui: { notify() {} } };
const event = (i: number) => ({
	type: "tool_result",
	toolName: "bash",
	toolCallId: `call-${i}`,
	input: { command: "cargo build" },
	content: [{ type: "text", text: slices[i % slices.length] }],
	details: { exitCode: 0 },
	isError: false,
});

type Rule = { kind: string; pattern: string; flags: string };
const rules = (await Bun.file(`${root}crates/core/tests/fixtures/redaction/baseline-patterns.json`).json()) as Rule[];
const compiled = rules.map((r) => ({ re: new RegExp(r.pattern, `${r.flags.replace("g", "")}g`), label: `[REDACTED:${r.kind}]` }));
function jsBaseline(ev: { content: { type: string; text: string }[] }): unknown {
	return ev.content.map((block) => {
		let text = block.text;
		for (const { re, label } of compiled) text = text.replace(re, label);
		return { ...block, text };
	});
}

function percentile(sorted: number[], p: number): number {
	return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

function time(label: string, call: (i: number) => unknown): { p50: number; p99: number; max: number; changed: number } {
	for (let i = 0; i < 100; i++) call(i); // warm-up: JIT and wasm tier-up
	const samples: number[] = [];
	let changed = 0;
	for (let i = 0; i < runs; i++) {
		const start = Bun.nanoseconds();
		const out = call(i);
		samples.push((Bun.nanoseconds() - start) / 1e6);
		if (out !== undefined) changed++;
	}
	samples.sort((a, b) => a - b);
	const r = { p50: percentile(samples, 50), p99: percentile(samples, 99), max: samples[samples.length - 1], changed };
	console.log(`${label}: p50 ${r.p50.toFixed(3)} ms, p99 ${r.p99.toFixed(3)} ms, max ${r.max.toFixed(3)} ms over ${runs} calls`);
	return r;
}

const avgKb = slices.reduce((n, s) => n + Buffer.byteLength(s), 0) / slices.length / 1024;
console.log(`plugin factory + bundle import: ${loadMs.toFixed(1)} ms; content: one text block of ~${avgKb.toFixed(0)} KB (64 slices)`);
// Events are built outside the timed call, as OMP builds them before calling handlers.
const events = Array.from({ length: slices.length }, (_, i) => event(i));
const plug = time("tool_result handler (dist/index.js)", (i) => handler(events[i % events.length], ctx));
console.log(`  results the handler changed (secrets found): ${plug.changed}/${runs}`);
// The same text through the string export: what the handler would cost without the serde
// round trip of the content array (a separate instance of the same wasm module).
const raw = await import(`${root}pkg/omp_discord_wasm.js`);
raw.initSync({ module: await Bun.file(`${root}pkg/omp_discord_wasm_bg.wasm`).arrayBuffer() });
const shim = await import(`${root}js-shim/wasm.ts`); // redactText: encode natively, pass bytes
const direct = time("wasm redactText on the same text", (i) => shim.redactText(slices[i % slices.length]));
const base = time("JS RegExp baseline on the same content", (i) => jsBaseline(events[i % events.length]));
console.log(`handler / JS baseline (p50): ${(plug.p50 / base.p50).toFixed(2)}x; handler / redactText (p50): ${(plug.p50 / direct.p50).toFixed(2)}x`);

if (jsonOut) {
	await Bun.write(jsonOut, `${JSON.stringify({ kb: avgKb, runs, handler: plug, redact_text: direct, js_baseline: base }, null, 2)}\n`);
}
