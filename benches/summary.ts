// Prints the summary table of a benches/run.sh output directory: each figure,
// its baseline or target, and the ratio. Reports; never fails on a miss.
// With --markdown FILE it also writes the report (BENCHMARKS.md) there.
//
//   bun benches/summary.ts DIR [--markdown FILE]
const dir = process.argv[2];
const markdownAt = process.argv.indexOf("--markdown");
const markdown = markdownAt > 0 ? process.argv[markdownAt + 1] : undefined;
if (!dir || (markdownAt > 0 && !markdown)) {
	console.error("usage: bun benches/summary.ts DIR [--markdown FILE]");
	process.exit(2);
}

async function text(name: string): Promise<string> {
	const file = Bun.file(`${dir}/${name}`);
	return (await file.exists()) ? file.text() : "";
}
async function json(name: string): Promise<any> {
	const file = Bun.file(`${dir}/${name}`);
	return (await file.exists()) ? file.json() : undefined;
}
function num(source: string, re: RegExp): number | undefined {
	const m = source.match(re);
	return m ? Number(m[1]) : undefined;
}

const rows: [string, string, string, string][] = [];
const fmt = (v: number | undefined, digits = 1, unit = "") => (v === undefined || Number.isNaN(v) ? "n/a" : `${v.toFixed(digits)}${unit}`);
/** `ok` / `MISS` against a target: lower is better unless `higher`. */
function verdict(v: number | undefined, target: number, higher = false): string {
	if (v === undefined || Number.isNaN(v)) return "n/a";
	return (higher ? v >= target : v <= target) ? "ok" : "MISS";
}
function row(what: string, value: string, target: string, status: string) {
	rows.push([what, value, target, status]);
}

const native = await text("redact-native.txt");
const nativeMbps = num(native, /native: (\d+(?:\.\d+)?) MB\/s whole log/);
const nativeChunked = num(native, /MB\/s whole log[^,]*, (\d+(?:\.\d+)?) MB\/s in/);
const naive = num(native, /naive baseline[^:]*: (\d+(?:\.\d+)?) MB\/s/);
const recall = num(native, /recall (\d\.\d+)/);
const fpr = num(native, /false-positive rate (\d\.\d+)/);
row("redaction native, whole log", fmt(nativeMbps, 0, " MB/s"), ">= 300 MB/s", verdict(nativeMbps, 300, true));
row("redaction native, 64 KB chunks", fmt(nativeChunked, 0, " MB/s"), ">= 300 MB/s", verdict(nativeChunked, 300, true));
if (naive !== undefined && nativeMbps !== undefined)
	row("  vs naive Rust regex baseline", `${fmt(nativeMbps / naive, 1)}x`, "(ratio)", "");
row("corpus recall", fmt(recall, 4), ">= 0.98", verdict(recall, 0.98, true));
row("corpus false-positive rate", fmt(fpr, 4), "<= 0.01", verdict(fpr, 0.01));

const wasm = await json("redact-wasm.json");
row("redaction wasm (Bun), 64 KB chunks", fmt(wasm?.wasm_mbps, 0, " MB/s"), ">= 100 MB/s", verdict(wasm?.wasm_mbps, 100, true));
row("redaction JS RegExp baseline (Bun)", fmt(wasm?.js_mbps, 1, " MB/s"), "(baseline)", "");
row("  wasm / JS, same run", `${fmt(wasm?.wasm_over_js, 2)}x`, "> 1x", verdict(wasm?.wasm_over_js, 1, true));
row("wasm module size", wasm ? `${(wasm.wasm_bytes / 1024).toFixed(0)} KiB` : "n/a", "(reported)", "");
row("bundle dist/index.js size", wasm ? `${(wasm.bundle_bytes / 1024).toFixed(0)} KiB` : "n/a", "(reported)", "");

const handler = await json("handler.json");
row("tool_result handler ~100 KB, p50", fmt(handler?.handler?.p50, 3, " ms"), "(reported)", "");
row("tool_result handler ~100 KB, p99", fmt(handler?.handler?.p99, 3, " ms"), "<= 2 ms", verdict(handler?.handler?.p99, 2));
if (handler) row("  vs JS RegExp on the same content (p50)", `${fmt(handler.handler.p50 / handler.js_baseline.p50, 2)}x`, "(ratio)", "");

const side = await json("sidecar.json");
const lat = (phase: string, what: string) => side?.[phase]?.[what];
for (const phase of ["sequential", "concurrent"]) {
	const r = lat(phase, "receipt");
	row(`notify ${phase}, write -> emulator p50`, fmt(r?.p50_ms, 3, " ms"), "<= 1 ms", verdict(r?.p50_ms, 1));
	row(`notify ${phase}, write -> emulator p99`, fmt(r?.p99_ms, 3, " ms"), "<= 5 ms", verdict(r?.p99_ms, 5));
	const d = lat(phase, "delivered");
	row(`notify ${phase}, write -> delivered p50/p99`, d ? `${d.p50_ms.toFixed(3)} / ${d.p99_ms.toFixed(3)} ms` : "n/a", "(bound)", "");
}
const b = lat("burst", "receipt");
row("notify burst (open loop), write -> emulator p50/p99", b ? `${b.p50_ms.toFixed(2)} / ${b.p99_ms.toFixed(2)} ms` : "n/a", "(reported)", "");
row("  message posts per notification (burst)", fmt(side?.burst_requests_per_notification, 3), "(coalescing)", "");
row("drain (rate limits on)", side ? `${side.drain_seconds.toFixed(1)} s vs bound ${side.drain_lower_bound_seconds.toFixed(1)} s` : "n/a", "", "");
row("  drain / lower bound", `${fmt(side?.drain_ratio, 2)}x`, "<= 1.2x", verdict(side?.drain_ratio, 1.2));
row("  message posts per notification (drain)", fmt(side?.drain_requests_per_notification, 3), "(>= 0.1 ideal)", "");
row("  429 answers during the drain", side ? String(side.drain_requests.status_429) : "n/a", "(0 = paced)", "");
row("sidecar RSS idle", fmt(side ? side.rss_idle_kib / 1024 : undefined, 1, " MiB"), "<= 20 MiB", verdict(side ? side.rss_idle_kib / 1024 : undefined, 20));
row("sidecar RSS after the drain (peak)", side ? `${(side.rss_after_drain_kib / 1024).toFixed(1)} (${(side.hwm_after_drain_kib / 1024).toFixed(1)}) MiB` : "n/a", "(reported)", "");

const inbound = await json("inbound.json");
const pair = (r: any) => (r ? `${r.p50_ms.toFixed(2)} / ${r.p99_ms.toFixed(2)} ms` : "n/a");
row("reply: dispatch -> inbound frame p50/p99", pair(inbound?.dispatch_to_inbound_frame), "(reported)", "");
row("reply: dispatch -> sendUserMessage (omp) p50/p99", pair(inbound?.dispatch_to_send_user_message_omp), "(reported)", "");
row("gateway TCP drop -> resumed delivery p50/p99", pair(inbound?.drop_to_delivery), "(reported)", "");
row("gateway op 7 -> resumed delivery p50/p99", pair(inbound?.reconnect_to_delivery), "(reported)", "");
row("gateway op 9 -> IDENTIFY + catch-up p50/max", inbound?.identify_to_delivery ? `${inbound.identify_to_delivery.p50_ms.toFixed(0)} / ${inbound.identify_to_delivery.max_ms.toFixed(0)} ms` : "n/a", "(reported)", "");

const startup = await text("startup.txt");
const without = num(startup, /without plugin: (\d+(?:\.\d+)?) ms/);
const withPlugin = num(startup, /with plugin: +(\d+(?:\.\d+)?) ms/);
const ratio = num(startup, /ratio (\d+\.\d+)/);
row("omp -p without plugin (median)", fmt(without, 0, " ms"), "(baseline)", "");
row("omp -p with plugin (median)", fmt(withPlugin, 0, " ms"), "(reported)", "");
row("  with / without", `${fmt(ratio, 3)}x`, "(ratio)", "");

const binaryPath = process.env.BENCH_SIDECAR_BINARY ?? "target/release/omp-discord";
const binary = Bun.file(binaryPath);
row("sidecar binary omp-discord, release (stripped)", (await binary.exists()) ? `${(binary.size / 1024 / 1024).toFixed(1)} MiB` : "n/a", "(reported)", "");

const widths = [0, 1, 2, 3].map((i) => Math.max(...rows.map((r) => r[i].length), ["figure", "value", "target", ""][i].length));
const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
console.log(line(["figure", "value", "target", ""]));
console.log(line(widths.map((w) => "-".repeat(w))));
for (const r of rows) console.log(line(r));
await Bun.write(`${dir}/summary.json`, `${JSON.stringify(rows.map(([figure, value, target, status]) => ({ figure, value, target, status })), null, 2)}\n`);

if (markdown) {
	// meta.json comes from benches/run.sh: when, where, which commit, and how busy the machine was.
	const meta = (await json("meta.json")) ?? {};
	const cell = (text: string) => text.replaceAll("|", "\\|");
	const lines = [
		"# Benchmarks",
		"",
		"Written by `bash benches/run.sh --markdown BENCHMARKS.md` (how each figure is measured, and why:",
		"[docs/benchmarks.md](docs/benchmarks.md)). Nothing here is a timed test; wall-clock figures",
		"depend on the machine, ratios measured in the same run much less.",
		"",
		`- run: ${meta.date ?? "?"}, commit \`${meta.commit ?? "?"}\`, command \`${meta.command ?? "bash benches/run.sh"}\``,
		`- machine: ${meta.cpus ?? "?"} CPUs, ${meta.memory ?? "?"}; load average ${meta.load_start ?? "?"} at the start, ${meta.load_end ?? "?"} at the end (a shared machine: other work competes for the CPUs)`,
		`- raw output: logs and JSON of this run in \`${meta.results ?? dir}\``,
		"",
		"| figure | value | target or baseline | |",
		"|---|---|---|---|",
		...rows.map((r) => `| ${r.map(cell).join(" | ")} |`),
		"",
	];
	await Bun.write(markdown, lines.join("\n"));
	console.log(`wrote ${markdown}`);
}
