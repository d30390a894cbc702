// omp-discord's OMP extension: registers the Discord tools and event handlers.
// Each handler is wiring only: wasm (Rust core) decides what to send and how,
// sidecar.ts carries it to `omp-discord serve`.
import type { ExtensionAPI, ExtensionContext } from "@oh-my-pi/pi-coding-agent";
import { hostname } from "node:os";
import { basename } from "node:path";
import { type Outcome, sidecar } from "./sidecar";
import * as wasm from "./wasm";

/** How long a tool call or event handler waits for Discord before giving up. */
const NOTIFY_DEADLINE_MS = 8000;

/** How long a pending approval keeps asking a sidecar that went away (a restart) before it blocks the call. */
const APPROVAL_RECONNECT_MS = 30_000;

type ToolDefinition = { name: string; label: string; description: string; parameters: Record<string, unknown> };

/** The extension API of each session in this process, to hand it replies from Discord. */
const sessionApis = new Map<string, ExtensionAPI>();

/** The latest context of each session in this process, to abort its run from Discord. */
const sessionContexts = new Map<string, ExtensionContext>();

/** Sessions in this process that started a run (an explicit follow-up only waits in the others). */
const sessionsThatRan = new Set<string>();

/** Each session's event filter and run card (state kept in wasm). */
const reporters = new Map<string, wasm.Reporter>();

/** OMP events the reporter reads. */
const REPORTED_EVENTS = [
	"session_start",
	"before_agent_start",
	"agent_start",
	"turn_end",
	"tool_execution_start",
	"tool_execution_end",
	"auto_compaction_start",
	"auto_compaction_end",
	"auto_retry_start",
	"auto_retry_end",
	"agent_end",
	"session_shutdown",
] as const;

type Report = { kind: "post" | "edit"; key?: string | null; payload: unknown };

/** First prompt of each session in this process: it names the session's thread. */
const firstPrompts = new Map<string, string>();

function sessionId(ctx: ExtensionContext): string {
	try {
		return ctx.sessionManager.getSessionId() ?? "unknown";
	} catch {
		return "unknown";
	}
}

function sessionOf(ctx: ExtensionContext): { id: string; cwd: string; prompt?: string } {
	const id = sessionId(ctx);
	return { id, cwd: ctx.cwd, prompt: firstPrompts.get(id) };
}

/** The last known reference of each session, for reports sent from the timer. */
const sessionRefs = new Map<string, ReturnType<typeof sessionOf>>();

function reporterFor(ctx: ExtensionContext): wasm.Reporter {
	const session = sessionOf(ctx);
	sessionContexts.set(session.id, ctx);
	sessionRefs.set(session.id, session);
	let reporter = reporters.get(session.id);
	if (!reporter) {
		reporter = new wasm.Reporter(sidecar().reportConfig, { id: session.id, cwd: session.cwd, host: hostname() });
		reporters.set(session.id, reporter);
	}
	return reporter;
}

/** Hands reports to the sidecar in order (kept while it is unreachable); each is done once journaled. */
function sendReports(session: ReturnType<typeof sessionOf>, reports: Report[]): Promise<void> {
	// Even with nothing new, the promise settles only once what is kept was handed over.
	if (mutedSessions.has(session.id)) reports = [];
	const frames = reports.map((report) => ({
		type: "notify",
		session,
		message: report.payload,
		key: report.key ?? undefined,
		edit: report.kind === "edit",
	}));
	return sidecar().sendInOrder(frames, NOTIFY_DEADLINE_MS);
}

/** Due run-card edits and coalesced bursts, once a second while sessions live. */
function startTicking(): void {
	const global = globalThis as unknown as Record<symbol, boolean | undefined>;
	const key = Symbol.for("omp-discord.tick");
	if (global[key]) return;
	global[key] = true;
	setInterval(() => {
		for (const [id, reporter] of reporters) {
			let reports: Report[] = [];
			try {
				reports = reporter.tick(Date.now()) as Report[];
			} catch {}
			const session = sessionRefs.get(id);
			if (session && reports.length > 0) void sendReports(session, reports);
		}
	}, 1000).unref();
}

type ToolAnswer = { text: string; isError: boolean };

/** What the model reads: core puts the sidecar's answer in words (a timeout after `accepted` means queued). */
function toolAnswer(tool: string, outcome: Outcome): ToolAnswer {
	if (!outcome.ok) {
		// The sidecar's own errors carry protocol codes; these also cover the shim's (no sidecar, timeout).
		return { text: `${tool} failed: Discord is unavailable (${outcome.code}): ${outcome.message}`, isError: true };
	}
	const frame = "queued" in outcome ? { type: "accepted", id: "", seq: 0 } : outcome.frame;
	return wasm.toolAnswer(tool, frame) as ToolAnswer;
}

/** Tool results reach the model redacted unless OMP_DISCORD_REDACT_TOOL_RESULTS=off (or `/discord redact off`). */
let redactingToolResults = !["0", "off", "false", "no"].includes(
	(process.env.OMP_DISCORD_REDACT_TOOL_RESULTS ?? "").trim().toLowerCase(),
);

/** Sessions whose reports `/discord off` stopped. */
const mutedSessions = new Set<string>();

type Redaction = { content?: unknown; report: { count: number; kinds: Record<string, number> } };

/** OMP passes a result on unmodified when a handler throws, so this never throws. */
function redactToolResult(content: unknown, details: unknown): { content?: unknown; details?: unknown } | undefined {
	let redaction: Redaction;
	try {
		redaction = wasm.redactToolContent(content, false) as Redaction;
	} catch {
		try {
			redaction = wasm.redactToolContent(content, true) as Redaction;
		} catch {
			return { content: [{ type: "text", text: "[omp-discord withheld this output: it could not be checked for secrets]" }] };
		}
	}
	if (!redaction.content) return undefined;
	const isPlainObject = details === undefined || (typeof details === "object" && details !== null && !Array.isArray(details));
	return {
		content: redaction.content,
		details: isPlainObject ? { ...(details as object), ompDiscordRedactions: redaction.report } : details,
	};
}

export default function ompDiscord(pi: ExtensionAPI): void {
	wasm.initWasm();
	const tools = wasm.toolDefinitions() as ToolDefinition[];

	for (const tool of tools) {
		pi.registerTool({
			name: tool.name,
			label: tool.label,
			description: tool.description,
			parameters: tool.parameters as never,
			// Extension tools the model should use without searching for them.
			loadMode: "essential",
			async execute(toolCallId, params, _signal, _onUpdate, ctx) {
				let answer: ToolAnswer;
				try {
					const frame = wasm.toolRequest(tool.name, params, sessionOf(ctx), toolCallId, basename(ctx.cwd)) as {
						timeout_secs?: number;
					};
					// A question waits for people; everything else for Discord only.
					const deadline = frame.timeout_secs ? (frame.timeout_secs + 10) * 1000 : NOTIFY_DEADLINE_MS;
					const outcome = await sidecar().request(frame as Record<string, unknown>, deadline);
					answer = toolAnswer(tool.name, outcome);
				} catch (err) {
					answer = { text: `${tool.name} failed: ${err instanceof Error ? err.message : String(err)}`, isError: true };
				}
				return { content: [{ type: "text", text: answer.text }], details: undefined, isError: answer.isError };
			},
		});
	}

	pi.on("session_start", async (_event, ctx) => {
		const session = sessionOf(ctx);
		sessionApis.set(session.id, pi);
		// Connects (starting the sidecar if needed) and learns its report settings.
		await sidecar().attach(session, 3000);
	});

	pi.on("agent_start", (_event, ctx) => {
		sessionsThatRan.add(sessionId(ctx));
	});

	// Before the reporter's handlers: reports about the first prompt carry it (it names the thread).
	pi.on("before_agent_start", (event, ctx) => {
		const id = sessionId(ctx);
		if (!firstPrompts.has(id) && typeof event.prompt === "string") firstPrompts.set(id, event.prompt);
	});

	for (const type of REPORTED_EVENTS) {
		pi.on(type as never, async (event: unknown, ctx: ExtensionContext) => {
			try {
				const reports = reporterFor(ctx).onEvent(event, Date.now()) as Report[];
				const sent = sendReports(sessionOf(ctx), reports);
				// OMP is not held up for Discord mid-run; a run's last reports are handed over
				// before OMP goes on (a print-mode OMP exits right after), the rest at shutdown.
				if (type !== "agent_end" && type !== "session_shutdown") return;
				await sent;
				if (type !== "session_shutdown") return;
				sidecar().spool();
				reporters.get(sessionId(ctx))?.free();
				reporters.delete(sessionId(ctx));
				sessionContexts.delete(sessionId(ctx));
			} catch (err) {
				if (ctx.hasUI) ctx.ui.notify(`omp-discord: ${err instanceof Error ? err.message : String(err)}`, "warning");
			}
		});
	}
	startTicking();

	sidecar().onInbound((frame) => {
		const api = sessionApis.get(frame.session_id);
		if (!api) return;
		// A session that never ran cannot hold an explicit follow-up (see below): it starts a run.
		let idle = !sessionsThatRan.has(frame.session_id);
		try {
			idle ||= sessionContexts.get(frame.session_id)?.isIdle() ?? false;
		} catch {}
		try {
			if (idle || frame.deliver_as === "steer") {
				// OMP's default: starts a run when idle, steers the current run when busy. (An
				// explicit follow-up only queues; OMP resumes an idle session for it only after
				// an earlier answer, so a fresh session would never run it.)
				api.sendUserMessage(frame.text);
			} else {
				// Queued until the current run is done.
				api.sendUserMessage(frame.text, { deliverAs: "followUp" });
			}
		} catch {
			return; // Not acknowledged: the sidecar offers it again on the next attach.
		}
		void sidecar().request({ type: "inbound_ack", message_id: frame.message_id }, NOTIFY_DEADLINE_MS);
	});

	sidecar().onControl((frame) => {
		if (frame.action !== "abort") return;
		const ctx = sessionContexts.get(frame.session_id);
		try {
			if (ctx && !ctx.isIdle()) ctx.abort();
		} catch {}
	});

	pi.on("tool_call", async (event, ctx) => {
		const policy = sidecar().approvalPolicyOrEnv();
		if (!wasm.needsApproval(policy, event.toolName)) return undefined;
		// Fails closed: no decision in time, or no sidecar, means the call does not run. A lost
		// connection (a sidecar restarting) is not a decision: ask again for the same call,
		// which waits on the same request in Discord.
		const deadline = Date.now() + (policy.timeout_secs + 10) * 1000;
		const frame = { type: "approve", session: sessionOf(ctx), tool_call_id: event.toolCallId, tool: event.toolName, input: event.input };
		let why = "no decision arrived";
		let unreachableSince: number | undefined;
		while (Date.now() < deadline) {
			const outcome = await sidecar().request(frame, deadline - Date.now());
			if (outcome.ok && "frame" in outcome && outcome.frame.type === "decision") {
				if (outcome.frame.approved) return undefined;
				return { block: true, reason: `Blocked: ${outcome.frame.reason}.` };
			}
			if (outcome.ok) break;
			why = outcome.message;
			// A restart takes seconds; a sidecar gone for longer will not decide in time.
			unreachableSince ??= Date.now();
			if (Date.now() - unreachableSince > APPROVAL_RECONNECT_MS) break;
			await new Promise((resolve) => setTimeout(resolve, 500));
		}
		return { block: true, reason: `Blocked: this call needs approval in Discord, and ${why}.` };
	});

	pi.on("tool_result", (event) => (redactingToolResults ? redactToolResult(event.content, event.details) : undefined) as never);

	pi.registerCommand("discord", {
		description: "omp-discord: status | on | off | level quiet|normal|verbose | redact on|off",
		getArgumentCompletions: (prefix) =>
			["status", "on", "off", "level quiet", "level normal", "level verbose", "redact on", "redact off"]
				.filter((item) => item.startsWith(prefix.trim()))
				.map((value) => ({ value, label: value })),
		handler: async (args, ctx) => {
			const say = (text: string, kind: "info" | "warning" = "info") => ctx.ui.notify(`omp-discord: ${text}`, kind);
			const [verb = "status", value = ""] = args.trim().split(/\s+/);
			const id = sessionId(ctx);
			switch (verb) {
				case "status": {
					const outcome = await sidecar().request({ type: "status" }, NOTIFY_DEADLINE_MS);
					if (!outcome.ok || !("frame" in outcome) || outcome.frame.type !== "status") {
						say(`the sidecar is unavailable (${outcome.ok ? "no status" : outcome.message})`, "warning");
						return;
					}
					const status = outcome.frame.status as Record<string, any>;
					const session = (status.sessions ?? []).find((s: any) => s.session_id === id);
					const thread = session?.thread_id ? `thread ${session.thread_id}` : "no thread yet";
					say(
						`${status.mode} mode, gateway ${status.gateway}, ${status.queue?.depth ?? 0} queued, ${thread}` +
							`${mutedSessions.has(id) ? ", reports off" : ""}${redactingToolResults ? "" : ", tool results not redacted"}` +
							`${sidecar().dropped ? `, ${sidecar().dropped} reports dropped (${sidecar().lastDropped})` : ""}`,
					);
					return;
				}
				case "on":
				case "off":
					if (verb === "off") mutedSessions.add(id);
					else mutedSessions.delete(id);
					say(`reports for this session are ${verb}`);
					return;
				case "level":
					try {
						reporterFor(ctx).setLevel(value);
						say(`report level is ${value}`);
					} catch (err) {
						say(`${err instanceof Error ? err.message : String(err)}`, "warning");
					}
					return;
				case "redact":
					if (value !== "on" && value !== "off") return say("use /discord redact on|off", "warning");
					redactingToolResults = value === "on";
					say(`tool results reach the model ${redactingToolResults ? "redacted" : "unredacted"}`);
					return;
				default:
					say("use /discord status | on | off | level quiet|normal|verbose | redact on|off", "warning");
			}
		},
	});

	pi.registerCommand("discord-ping", {
		description: "omp-discord: post a test message to this session's Discord thread",
		handler: async (args, ctx) => {
			const text = args.trim() || "ping from omp";
			let answer: ToolAnswer;
			try {
				const frame = wasm.toolRequest("discord_notify", { message: text }, sessionOf(ctx), `ping-${Date.now()}`, basename(ctx.cwd));
				answer = toolAnswer("discord_notify", await sidecar().request(frame as Record<string, unknown>, NOTIFY_DEADLINE_MS));
			} catch (err) {
				answer = { text: err instanceof Error ? err.message : String(err), isError: true };
			}
			ctx.ui.notify(`omp-discord: ${answer.text}`, answer.isError ? "warning" : "info");
		},
	});

}
