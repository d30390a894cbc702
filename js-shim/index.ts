// omp-discord's OMP extension: registers the Discord tools, event handlers and
// commands. Each handler is wiring only: wasm (Rust core, `shim`) decides what
// to send, say and wait for; sidecar.ts carries it to `omp-discord serve`.
import type { ExtensionAPI, ExtensionContext } from "@oh-my-pi/pi-coding-agent";
import { describe, sidecar, tryOr } from "./sidecar";
import * as wasm from "./wasm";
import type { JsonValue, Notice, OmpSession, ToolCall, ToolText } from "./wasm";

/** Each session's extension API and latest context in this process: replies, Stop and Retry from Discord. */
const sessionApis = new Map<string, ExtensionAPI>();
const sessionContexts = new Map<string, ExtensionContext>();
/** Notices from the sidecar already shown in this process. */
const heard = new Set<string>();

/** What core needs to know of an OMP context. */
function omp(ctx: ExtensionContext): OmpSession {
	const manager = ctx.sessionManager;
	return {
		id: tryOr(() => manager.getSessionId() ?? "unknown", "unknown"),
		cwd: ctx.cwd,
		file: tryOr(() => manager.getSessionFile(), undefined),
		header_parent: tryOr(() => manager.getHeader()?.parentSession, undefined),
	};
}

const reportConfig = () => sidecar().welcome?.report ?? null;
const say = (ctx: ExtensionContext, notice: Notice) => ctx.ui.notify(notice.text, notice.level);

/** Sends a tool call's request and puts the answer in words for the model (or a person). */
async function answer(tool: string, call: ToolCall): Promise<ToolText> {
	return call.type === "answer" ? call : wasm.toolAnswer(tool, await sidecar().request(call.frame, call.wait_ms));
}

/** OMP passes a result on unmodified when a handler throws, so this never throws. */
export function redactToolResult(content: unknown, details: unknown): { content: unknown; details?: unknown } | undefined {
	// The conservative pass (high-entropy runs too) is the fallback when the normal one fails.
	for (const conservative of [false, true]) {
		try {
			return wasm.redactToolResult(content, details, conservative);
		} catch {}
	}
	return { content: [{ type: "text", text: wasm.settings().withheld_text }] };
}

export default function ompDiscord(pi: ExtensionAPI): void {
	wasm.initWasm();
	const shim = wasm.shim();
	const { deadlines } = wasm.settings();

	for (const tool of wasm.toolDefinitions()) {
		pi.registerTool({
			...tool,
			parameters: tool.parameters as never,
			loadMode: "essential", // Extension tools the model should use without searching for them.
			async execute(toolCallId, params, _signal, _onUpdate, ctx) {
				const call = async () => answer(tool.name, shim.toolCall(tool.name, params, omp(ctx), toolCallId));
				const text = await call().catch((err) => ({ text: `${tool.name} failed: ${describe(err)}`, isError: true }));
				return { content: [{ type: "text", text: text.text }], details: undefined, isError: text.isError };
			},
		});
	}

	pi.on("session_start", async (_event, ctx) => {
		sessionApis.set(omp(ctx).id, pi);
		sessionContexts.set(omp(ctx).id, ctx);
		// Connects (starting the sidecar if needed); a subagent's replies and controls go to its parent, attached already.
		const session = shim.attach(omp(ctx));
		if (session) await sidecar().attach(session);
	});

	for (const type of wasm.reportedEvents()) {
		pi.on(type as never, async (event: unknown, ctx: ExtensionContext) => {
			try {
				const session = omp(ctx);
				sessionContexts.set(session.id, ctx);
				const step = shim.onEvent(session, event, Date.now(), reportConfig());
				// OMP is not held up mid-run; a run's last reports are handed over before OMP goes on (print mode exits).
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

	sidecar().onInbound = (frame) => {
		const api = sessionApis.get(frame.session_id);
		if (!api) return;
		const step = shim.inbound(frame, tryOr(() => sessionContexts.get(frame.session_id)?.isIdle() ?? false, false));
		// A reply offered again (its acknowledgement was lost in a restart) is acknowledged, but OMP gets it only
		// once. "now" starts a run when idle and steers a busy one; "follow_up" waits for the run's end.
		if (step !== "again") {
			try {
				if (step === "now") api.sendUserMessage(frame.text);
				else api.sendUserMessage(frame.text, { deliverAs: "followUp" });
			} catch {
				return; // Not acknowledged: the sidecar offers it again on the next attach.
			}
			shim.handedOn(frame.message_id);
		}
		void sidecar().request({ type: "inbound_ack", message_id: frame.message_id }, deadlines.notify_ms);
	};

	// What the sidecar wants the person at the terminal to know (replies from Discord stopped): once per process.
	sidecar().onNotice = (frame) => {
		const ctx = sessionContexts.get(frame.session_id);
		if (heard.has(frame.text) || !ctx?.hasUI) return;
		heard.add(frame.text);
		say(ctx, wasm.notice(frame.text, true));
	};

	// Actions this shim does not know are ignored (the protocol lets the sidecar add some).
	sidecar().onControl = (frame) => {
		try {
			const ctx = sessionContexts.get(frame.session_id);
			if (frame.action === "abort" && ctx && !ctx.isIdle()) ctx.abort();
			const prompt = frame.action === "retry" ? shim.retryPrompt(frame.session_id) : undefined;
			// Starts a run when idle, queues behind the current one when busy.
			if (prompt) sessionApis.get(frame.session_id)?.sendUserMessage(prompt, { deliverAs: "followUp" });
		} catch {}
	};

	// Fails closed: no decision in time, or no sidecar, means the call does not run. A lost connection (a restart)
	// is not a decision: ask again for the same call, which waits on the same request in Discord.
	pi.on("tool_call", async (event, ctx) => {
		let gate = shim.approvalGate(sidecar().welcome?.approvals ?? null, event.toolName, Date.now());
		if (!gate) return undefined;
		const session = shim.sessionOf(omp(ctx));
		const frame = { type: "approve", session, tool_call_id: event.toolCallId, tool: event.toolName, input: event.input as JsonValue } as const;
		while (Date.now() < gate.deadline_ms) {
			const step = wasm.approvalStep(gate, await sidecar().request(frame, gate.deadline_ms - Date.now()), Date.now());
			if (step.type !== "retry") return step.type === "run" ? undefined : { block: true, reason: step.reason };
			gate = step.gate;
			await Bun.sleep(step.after_ms);
		}
		return { block: true, reason: wasm.approvalBlocked(gate.why ?? undefined) };
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
			const status = await sidecar().request({ type: "status" }, deadlines.notify_ms);
			say(ctx, shim.statusLine(session.id, status, sidecar().dropped, sidecar().lastDropped));
		},
	});

	pi.registerCommand("discord-ping", {
		description: pingDescription,
		handler: async (args, ctx) => {
			const ping = async () => answer("discord_notify", shim.ping(omp(ctx), args, Date.now()));
			const text = await ping().catch((err) => ({ text: describe(err), isError: true }));
			say(ctx, wasm.notice(text.text, text.isError));
		},
	});
}
