// The only place that loads the wasm module. The bytes are inlined as base64 (by scripts/build.sh) so the bundle
// is one self-contained file; wasm-pack's default init would fetch a URL. Types are core's (./generated/types.ts).
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import { initSync, redactTextUtf8, Shim, shimSettings } from "../pkg/omp_discord_wasm.js";
import type { ShimSettings } from "./generated/types";
import { WASM_BASE64 } from "./wasm-inline";

export * from "../pkg/omp_discord_wasm.js";
export type * from "./generated/types";

let ready = false;

/** Initialise the wasm module once per process (OMP may run the factory more than once). */
export function initWasm(): void {
	if (!ready) initSync({ module: Buffer.from(WASM_BASE64, "base64") });
	ready = true;
}

// Text goes into wasm as UTF-8 that TextEncoder writes natively (`redactToolResult` too): wasm-bindgen's own
// string passing copies ASCII one character at a time in JS, ~0.15 ms per 100 KB before the JIT warms up.
const utf8 = new TextEncoder();

/** Replaces secrets in `text` with `[REDACTED:<kind>]`. */
export const redactText = (text: string): string => redactTextUtf8(utf8.encode(text));

/** This process's settings (from its environment) and its sessions' state, made once. */
const KEY = Symbol.for("omp-discord.shim");
function processState(): { settings: ShimSettings; shim: Shim } {
	const global = globalThis as unknown as Record<symbol, ReturnType<typeof processState> | undefined>;
	initWasm();
	const settings = global[KEY]?.settings ?? shimSettings({ ...process.env }, hostname());
	return (global[KEY] ??= { settings, shim: new Shim(settings, randomBytes(8).toString("hex")) });
}
export const settings = (): ShimSettings => processState().settings;
export const shim = (): Shim => processState().shim;
