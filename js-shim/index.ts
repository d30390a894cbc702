// omp-discord's OMP extension: registers the Discord tools and event handlers.
// Each handler is wiring only: wasm (Rust core) decides what to send and how,
// sidecar.ts carries it to `omp-discord serve`.
import type { ExtensionAPI, ExtensionContext } from "@oh-my-pi/pi-coding-agent";
import { hostname } from "node:os";
import { basename, dirname } from "node:path";
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

/** Discord replies this process handed to OMP (oldest first), so one offered again is not handed on twice. */
const handedOn = new Set<string>();
const MAX_HANDED_ON = 10_000;

/** First prompt of each session in this process: it names the session's thread. */
const firstPrompts = new Map<string, string>();

/** Latest prompt of each session in this process: the run card's Retry sends it again. */
const lastPrompts = new Map<string, string>();

function sessionId(ctx: ExtensionContext): string {
	try {
		return ctx.sessionManager.getSessionId() ?? "unknown";
	} catch {
		return "unknown";
	}
}

type SessionRef = { id: string; cwd: string; prompt?: string };

function ownSession(ctx: ExtensionContext): SessionRef {
	const id = sessionId(ctx);
	return { id, cwd: ctx.cwd, prompt: firstPrompts.get(id) };
}

/** Session file → id of each session this process has served, to find a subagent's parent. */
const sessionIdsByFile = new Map<string, string>();
/** Subagent session id → its parent's. */
const parents = new Map<string, string>();

function sessionFile(ctx: ExtensionContext): string | undefined {
	try {
		return ctx.sessionManager.getSessionFile() ?? undefined;
	} catch {
		return undefined;
	}
}

/**
 * The parent session when `ctx` is a subagent's. OMP's `task` tool runs a
 * subagent in the same process (re-running this factory) with its session
 * file in the parent's artifacts dir, `<parent>/<agent>.jsonl`, and the
 * parent's file in its header (`parentSession`). A parent run without a
 * session file (`--no-session`) gives its subagents none: they report as
 * sessions of their own.
 */
export function parentOf(ctx: ExtensionContext): string | undefined {
	const id = sessionId(ctx);
	const known = parents.get(id);
	if (known) return known;
	const file = sessionFile(ctx);
	if (!file) return undefined;
	if (!sessionIdsByFile.has(file)) sessionIdsByFile.set(file, id);
	const parentFile = `${dirname(file)}.jsonl`;
	let named: string | undefined;
	try {
		named = (ctx.sessionManager as unknown as { getHeader?(): { parentSession?: string } | null }).getHeader?.()?.parentSession;
	} catch {}
	const parent = sessionIdsByFile.get(parentFile);
	if (!parent || parent === id || (named !== undefined && named !== parentFile)) return undefined;
	parents.set(id, parent);
	return parent;
}

/** Where a session's reports and tool posts go: its own thread, or its parent's for a subagent. */
export function sessionOf(ctx: ExtensionContext): SessionRef {
	const parent = parentOf(ctx);
	if (parent) return sessionRefs.get(parent) ?? { id: parent, cwd: ctx.cwd, prompt: firstPrompts.get(parent) };
	return ownSession(ctx);
}

/** Where each session's reports go (see `sessionOf`), for reports sent from the timer. */
const sessionRefs = new Map<string, SessionRef>();

function reporterFor(ctx: ExtensionContext): wasm.Reporter {
	const own = ownSession(ctx);
	sessionContexts.set(own.id, ctx);
	sessionRefs.set(own.id, sessionOf(ctx));
	let reporter = reporters.get(own.id);
	if (!reporter) {
		const parent = parentOf(ctx);
		const info = { id: own.id, cwd: own.cwd, host: hostname(), ...(parent ? { parent_id: parent } : {}) };
		reporter = new wasm.Reporter(sidecar().reportConfig, info);
		reporters.set(own.id, reporter);
	}
	return reporter;
}

/** Hands reports to the sidecar in order (kept while it is unreachable); each is done once journaled. */
function sendReports(session: SessionRef, reports: Report[]): Promise<void> {
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

/** Outcomes the shim makes itself: no sidecar, no answer in time, too many waiting. */
const SHIM_CODES = new Set(["sidecar_unavailable", "sidecar_timeout", "queue_full"]);

/** What the model reads: core puts the sidecar's answer in words (a timeout after `accepted` means queued). */
function toolAnswer(tool: string, outcome: Outcome): ToolAnswer {
	if (!outcome.ok) {
		if (SHIM_CODES.has(outcome.code)) {
			const hint = outcome.code === "sidecar_timeout" ? "; Discord may be slow or unreachable, try again later" : "";
			return { text: `${tool} failed: Discord is unavailable (${outcome.code}): ${outcome.message}${hint}`, isError: true };
		}
		// The sidecar's errors (unknown channel, Discord's refusal, …) read as core words them.
		try {
			return wasm.toolAnswer(tool, { type: "error", code: outcome.code, message: outcome.message }) as ToolAnswer;
		} catch {
			return { text: `${tool} failed (${outcome.code}): ${outcome.message}`, isError: true };
		}
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

type Report = { count: number; kinds: Record<string, number> };
type Redaction = { content?: unknown; report: Report };

/**
 * Redacts the text blocks of a tool result's content (a string, or
 * `[{type: "text", text}, …]`); other blocks pass untouched. Only the text
 * crosses into wasm, one string per block: an image's data never does.
 */
function redactContent(content: unknown, conservative: boolean): Redaction {
	const report: Report = { count: 0, kinds: {} };
	const one = (text: string): string | undefined => {
		const redacted = wasm.redactToolText(text, conservative) as { text: string; report: Report } | undefined;
		if (!redacted) return undefined;
		report.count += redacted.report.count;
		for (const [kind, n] of Object.entries(redacted.report.kinds)) report.kinds[kind] = (report.kinds[kind] ?? 0) + n;
		return redacted.text;
	};
	if (typeof content === "string") return { content: one(content), report };
	if (!Array.isArray(content)) return { report };
	let changed = false;
	const blocks = content.map((block) => {
		if (block && typeof block === "object" && block.type === "text" && typeof block.text === "string") {
			const text = one(block.text);
			if (text !== undefined) {
				changed = true;
				return { ...block, text };
			}
		}
		return block;
	});
	return changed ? { content: blocks, report } : { report };
}

/** OMP passes a result on unmodified when a handler throws, so this never throws. */
export function redactToolResult(content: unknown, details: unknown): { content?: unknown; details?: unknown } | undefined {
	let redaction: Redaction;
	try {
		redaction = redactContent(content, false);
	} catch {
		try {
			redaction = redactContent(content, true);
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
		const own = ownSession(ctx);
		sessionApis.set(own.id, pi);
		// A subagent's replies and controls belong to its parent, which is attached already.
		if (parentOf(ctx)) return;
		// Connects (starting the sidecar if needed) and learns its report settings.
		await sidecar().attach(own, 3000);
	});

	pi.on("agent_start", (_event, ctx) => {
		sessionsThatRan.add(sessionId(ctx));
	});

	// Before the reporter's handlers: reports about the first prompt carry it (it names the thread).
	// Redacted here: it travels in every report's session, and into the spool and the journal.
	pi.on("before_agent_start", (event, ctx) => {
		const id = sessionId(ctx);
		if (typeof event.prompt !== "string") return;
		if (!firstPrompts.has(id)) firstPrompts.set(id, wasm.redactText(event.prompt));
		// Kept as typed: it stays in this process, and Retry gives it back to OMP.
		lastPrompts.set(id, event.prompt);
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
				lastPrompts.delete(sessionId(ctx));
			} catch (err) {
				if (ctx.hasUI) ctx.ui.notify(`omp-discord: ${err instanceof Error ? err.message : String(err)}`, "warning");
			}
		});
	}
	startTicking();

	sidecar().onInbound((frame) => {
		const api = sessionApis.get(frame.session_id);
		if (!api) return;
		// A reply handed on whose acknowledgement did not reach the sidecar (it
		// restarted) is offered again: acknowledge it, but OMP gets it only once.
		if (handedOn.has(frame.message_id)) {
			void sidecar().request({ type: "inbound_ack", message_id: frame.message_id }, NOTIFY_DEADLINE_MS);
			return;
		}
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
		handedOn.add(frame.message_id);
		// Bounded: a reply is offered again only until its acknowledgement lands.
		if (handedOn.size > MAX_HANDED_ON) handedOn.delete(handedOn.values().next().value as string);
		void sidecar().request({ type: "inbound_ack", message_id: frame.message_id }, NOTIFY_DEADLINE_MS);
	});

	// Actions this shim does not know are ignored (the protocol lets the sidecar add some).
	sidecar().onControl((frame) => {
		try {
			if (frame.action === "abort") {
				const ctx = sessionContexts.get(frame.session_id);
				if (ctx && !ctx.isIdle()) ctx.abort();
			} else if (frame.action === "retry") {
				const prompt = lastPrompts.get(frame.session_id);
				// Starts a run when idle, queues behind the current one when busy.
				if (prompt) sessionApis.get(frame.session_id)?.sendUserMessage(prompt, { deliverAs: "followUp" });
			}
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
