// omp-discord's OMP extension: registers the Discord tools, event handlers and
// commands. Each handler is wiring only: wasm (Rust core, `shim()`) decides
// what to send, say and wait for; sidecar.ts carries it to `omp-discord serve`.
import type { ExtensionAPI, ExtensionContext } from "@oh-my-pi/pi-coding-agent";
import { sidecar } from "./sidecar";
import * as wasm from "./wasm";
import type { JsonValue, Notice, OmpSession, ToolCall, ToolText } from "./wasm";

/** The extension API and latest context of each session in this process: replies, Stop and Retry from Discord. */
const sessionApis = new Map<string, ExtensionAPI>();
const sessionContexts = new Map<string, ExtensionContext>();

function tryOr<T>(read: () => T, fallback: T): T {
	try {
		return read() ?? fallback;
	} catch {
		return fallback;
	}
}

/** What core needs to know of an OMP context. */
function omp(ctx: ExtensionContext): OmpSession {
	const manager = ctx.sessionManager as ExtensionContext["sessionManager"] & { getHeader?(): { parentSession?: string } | null };
	return {
		id: tryOr(() => manager.getSessionId(), "unknown"),
		cwd: ctx.cwd,
		file: tryOr(() => manager.getSessionFile(), undefined),
		header_parent: tryOr(() => manager.getHeader?.()?.parentSession, undefined),
	};
}

/** The sidecar's `[report]` table, from its welcome (`null`: the defaults). */
const reportConfig = () => sidecar().welcome?.report ?? null;

function say(ctx: ExtensionContext, notice: Notice): void {
	ctx.ui.notify(notice.text, notice.level);
}

/** Sends a tool call's request and puts the answer in words for the model (or a person). */
async function answer(tool: string, call: ToolCall): Promise<ToolText> {
	if (call.type === "answer") return call;
	return wasm.toolAnswer(tool, await sidecar().request(call.frame, call.wait_ms));
}

/** OMP passes a result on unmodified when a handler throws, so this never throws. */
export function redactToolResult(content: unknown, details: unknown): { content: unknown; details?: unknown } | undefined {
	try {
		return wasm.redactToolResult(content, details, false);
	} catch {
		try {
			return wasm.redactToolResult(content, details, true);
		} catch {
			return { content: [{ type: "text", text: wasm.settings().withheld_text }] };
		}
	}
}

/** Due run-card edits and coalesced bursts, once a second while sessions live. */
function startTicking(): void {
	const global = globalThis as unknown as Record<symbol, boolean | undefined>;
	const key = Symbol.for("omp-discord.tick");
	if (global[key]) return;
	global[key] = true;
	setInterval(() => {
		const frames = tryOr(() => wasm.shim().tick(Date.now()), []);
		if (frames.length > 0) void sidecar().sendInOrder(frames);
	}, wasm.settings().deadlines.tick_ms).unref();
}

export default function ompDiscord(pi: ExtensionAPI): void {
	wasm.initWasm();
	const shim = wasm.shim();

	for (const tool of wasm.toolDefinitions()) {
		pi.registerTool({
			name: tool.name,
			label: tool.label,
			description: tool.description,
			parameters: tool.parameters as never,
			// Extension tools the model should use without searching for them.
			loadMode: "essential",
			async execute(toolCallId, params, _signal, _onUpdate, ctx) {
				let text: ToolText;
				try {
					text = await answer(tool.name, shim.toolCall(tool.name, params, omp(ctx), toolCallId));
				} catch (err) {
					text = { text: `${tool.name} failed: ${describe(err)}`, isError: true };
				}
				return { content: [{ type: "text", text: text.text }], details: undefined, isError: text.isError };
			},
		});
	}

	pi.on("session_start", async (_event, ctx) => {
		const session = shim.attach(omp(ctx));
		sessionApis.set(omp(ctx).id, pi);
		// Connects (starting the sidecar if needed) and learns its report settings.
		if (session) await sidecar().attach(session);
	});

	for (const type of wasm.reportedEvents()) {
		pi.on(type as never, async (event: unknown, ctx: ExtensionContext) => {
			try {
				const session = omp(ctx);
				sessionContexts.set(session.id, ctx);
				const step = shim.onEvent(session, event, Date.now(), reportConfig());
				// OMP is not held up for Discord mid-run; a run's last reports are handed over
				// before OMP goes on (a print-mode OMP exits right after), the rest at shutdown.
				const sent = sidecar().sendInOrder(step.frames);
				if (!step.settle) return;
				await sent;
				if (!step.end) return;
				sidecar().spool();
				shim.endSession(session.id);
				sessionContexts.delete(session.id);
			} catch (err) {
				if (ctx.hasUI) say(ctx, wasm.notice(describe(err), true));
			}
		});
	}
	startTicking();

	sidecar().onInbound((frame) => {
		const api = sessionApis.get(frame.session_id);
		if (!api) return;
		const idle = tryOr(() => sessionContexts.get(frame.session_id)?.isIdle() ?? false, false);
		const step = shim.inbound(frame, idle);
		// A reply handed on whose acknowledgement did not reach the sidecar (it
		// restarted) is offered again: acknowledged, but OMP gets it only once.
		if (step !== "again") {
			try {
				// "now" starts a run when idle and steers a busy one; "follow_up" waits for the run's end.
				if (step === "now") api.sendUserMessage(frame.text);
				else api.sendUserMessage(frame.text, { deliverAs: "followUp" });
			} catch {
				return; // Not acknowledged: the sidecar offers it again on the next attach.
			}
			shim.handedOn(frame.message_id);
		}
		void sidecar().request({ type: "inbound_ack", message_id: frame.message_id }, wasm.settings().deadlines.notify_ms);
	});

	// Actions this shim does not know are ignored (the protocol lets the sidecar add some).
	sidecar().onControl((frame) => {
		try {
			if (frame.action === "abort") {
				const ctx = sessionContexts.get(frame.session_id);
				if (ctx && !ctx.isIdle()) ctx.abort();
			} else if (frame.action === "retry") {
				const prompt = shim.retryPrompt(frame.session_id);
				// Starts a run when idle, queues behind the current one when busy.
				if (prompt) sessionApis.get(frame.session_id)?.sendUserMessage(prompt, { deliverAs: "followUp" });
			}
		} catch {}
	});

	// Fails closed: no decision in time, or no sidecar, means the call does not run. A lost
	// connection (a sidecar restarting) is not a decision: ask again for the same call,
	// which waits on the same request in Discord.
	pi.on("tool_call", async (event, ctx) => {
		const wait = shim.approvalWaitMs(sidecar().welcome?.approvals ?? null, event.toolName);
		if (wait === undefined) return undefined;
		const { approval_reconnect_ms, approval_retry_ms } = wasm.settings().deadlines;
		const deadline = Date.now() + wait;
		const session = shim.sessionOf(omp(ctx));
		const frame = { type: "approve", session, tool_call_id: event.toolCallId, tool: event.toolName, input: event.input as JsonValue } as const;
		let why: string | undefined;
		let unreachableSince: number | undefined;
		while (Date.now() < deadline) {
			const step = wasm.approvalStep(await sidecar().request(frame, deadline - Date.now()));
			if (step.type === "run") return undefined;
			if (step.type === "block") return { block: true, reason: step.reason };
			if (step.type === "stop") break;
			why = step.why;
			// A restart takes seconds; a sidecar gone for longer will not decide in time.
			unreachableSince ??= Date.now();
			if (Date.now() - unreachableSince > approval_reconnect_ms) break;
			await Bun.sleep(approval_retry_ms);
		}
		return { block: true, reason: wasm.approvalBlocked(why) };
	});

	pi.on("tool_result", (event) => (shim.redactsToolResults() ? redactToolResult(event.content, event.details) : undefined) as never);

	const [discordDescription, pingDescription] = wasm.commandDescriptions();
	pi.registerCommand("discord", {
		description: discordDescription,
		getArgumentCompletions: (prefix) => wasm.discordCompletions(prefix).map((value) => ({ value, label: value })),
		handler: async (args, ctx) => {
			const session = omp(ctx);
			const step = shim.command(session, args, reportConfig());
			if (step.type === "say") return say(ctx, step.notice);
			const status = await sidecar().request({ type: "status" }, wasm.settings().deadlines.notify_ms);
			say(ctx, shim.statusLine(session.id, status, sidecar().dropped, sidecar().lastDropped));
		},
	});

	pi.registerCommand("discord-ping", {
		description: pingDescription,
		handler: async (args, ctx) => {
			let text: ToolText;
			try {
				text = await answer("discord_notify", shim.ping(omp(ctx), args, Date.now()));
			} catch (err) {
				text = { text: describe(err), isError: true };
			}
			say(ctx, wasm.notice(text.text, text.isError));
		},
	});
}

function describe(err: unknown): string {
	return err instanceof Error ? err.message : String(err);
}
