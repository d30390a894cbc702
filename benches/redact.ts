// Redaction throughput from Bun: the wasm module (loaded the way js-shim/wasm.ts
// loads it: initSync on the module's bytes) against the same rule set run as
// JS RegExp (crates/core/tests/fixtures/redaction/baseline-patterns.json), in
// the same process, over the same log, in the same chunks.
//
//   bun benches/redact.ts LOG [--runs 3] [--js-runs 1] [--chunk-kb 64] [--json OUT]
//
// LOG is written by `cargo run --release -p omp-discord-core --example
// redact_bench -- --write-log LOG`. Prints MB/s (1 MB = 10^6 bytes) as the
// median of the runs, the wasm/JS ratio, and the sizes of the wasm module and
// the plugin bundle. It measures; it asserts nothing about speed.
import { initSync } from "../pkg/omp_discord_wasm.js";
// The shim's own wrapper (text encoded natively, passed as UTF-8 bytes).
import { redactText } from "../js-shim/wasm.ts";
import { arg, logPathOrUsage } from "./args.ts";

const root = new URL("..", import.meta.url).pathname;

const logPath = logPathOrUsage("bun benches/redact.ts LOG [--runs N] [--js-runs N] [--chunk-kb N] [--json OUT]");
const runs = Number(arg("--runs", "3"));
const jsRuns = Number(arg("--js-runs", "1"));
const chunkKb = Number(arg("--chunk-kb", "64"));
const jsonOut = arg("--json", "");

/** Splits at the first newline after every `size` bytes, like redact_bench's `chunks`. */
function chunks(text: string, size: number): string[] {
	const out: string[] = [];
	let start = 0;
	while (start < text.length) {
		let end = Math.min(start + size, text.length);
		if (end < text.length) {
			const nl = text.indexOf("\n", end);
			end = nl < 0 ? text.length : nl + 1;
		}
		out.push(text.slice(start, end));
		start = end;
	}
	return out;
}

function median(values: number[]): number {
	const sorted = [...values].sort((a, b) => a - b);
	return sorted[Math.floor(sorted.length / 2)];
}

/** Runs `redact` over every piece `n` times; returns the median seconds and the last run's marker count. */
function measure(pieces: string[], n: number, redact: (text: string) => string): { seconds: number; redactions: number } {
	const times: number[] = [];
	let redactions = 0;
	for (let run = 0; run < n; run++) {
		let count = 0;
		const start = Bun.nanoseconds();
		for (const piece of pieces) {
			const out = redact(piece);
			// Counting is part of consuming the output; it is cheap next to the redaction.
			if (out.length !== piece.length) count += out.split("[REDACTED:").length - 1;
		}
		times.push((Bun.nanoseconds() - start) / 1e9);
		redactions = count;
	}
	return { seconds: median(times), redactions };
}

const wasmPath = `${root}pkg/omp_discord_wasm_bg.wasm`;
const bundlePath = `${root}dist/index.js`;
const wasmBytes = await Bun.file(wasmPath).arrayBuffer();
const initStart = Bun.nanoseconds();
initSync({ module: wasmBytes });
const initMs = (Bun.nanoseconds() - initStart) / 1e6;

type Rule = { kind: string; pattern: string; flags: string };
const rules = (await Bun.file(`${root}crates/core/tests/fixtures/redaction/baseline-patterns.json`).json()) as Rule[];
const compiled = rules.map((r) => ({ re: new RegExp(r.pattern, `${r.flags.replace("g", "")}g`), label: `[REDACTED:${r.kind}]` }));
/** What a hand-written JS redactor does: every rule's RegExp over the text, in turn. */
function redactJs(text: string): string {
	for (const { re, label } of compiled) text = text.replace(re, label);
	return text;
}

const text = await Bun.file(logPath).text();
const bytes = Buffer.byteLength(text);
const pieces = chunks(text, chunkKb * 1024);
const mb = bytes / 1e6;

// Warm up both paths (JIT, wasm tier-up) on a slice before timing.
const warm = pieces.slice(0, 16);
measure(warm, 1, redactText);
measure(warm, 1, redactJs);

const wasm = measure(pieces, runs, redactText);
const js = measure(pieces, jsRuns, redactJs);
const wasmMbps = mb / wasm.seconds;
const jsMbps = mb / js.seconds;
const wasmSize = Bun.file(wasmPath).size;
const bundleSize = Bun.file(bundlePath).size;

console.log(`log: ${mb.toFixed(1)} MB in ${pieces.length} chunks of ~${chunkKb} KB; Bun ${Bun.version}; wasm initSync ${initMs.toFixed(1)} ms`);
console.log(`wasm redactText: ${wasmMbps.toFixed(0)} MB/s (median of ${runs}, ${wasm.seconds.toFixed(2)} s, ${wasm.redactions} redactions)`);
console.log(`JS RegExp baseline (${rules.length} rules, one replace each): ${jsMbps.toFixed(1)} MB/s (median of ${jsRuns}, ${js.seconds.toFixed(2)} s, ${js.redactions} redactions)`);
console.log(`wasm / JS: ${(wasmMbps / jsMbps).toFixed(2)}x`);
console.log(`wasm module: ${wasmSize} bytes (${(wasmSize / 1024).toFixed(0)} KiB); bundle dist/index.js: ${bundleSize} bytes (${(bundleSize / 1024).toFixed(0)} KiB)`);

if (jsonOut) {
	const result = {
		log_mb: mb,
		chunk_kb: chunkKb,
		wasm_mbps: wasmMbps,
		js_mbps: jsMbps,
		wasm_over_js: wasmMbps / jsMbps,
		wasm_redactions: wasm.redactions,
		js_redactions: js.redactions,
		wasm_bytes: wasmSize,
		bundle_bytes: bundleSize,
		wasm_init_ms: initMs,
	};
	await Bun.write(jsonOut, `${JSON.stringify(result, null, 2)}\n`);
}
