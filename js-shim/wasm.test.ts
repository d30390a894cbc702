// The wasm build, called from Bun exactly as the shim calls it. Golden frames
// are the same files the Rust tests read; the decisions behind these calls
// have their own unit tests in crates/core/src/shim/ and settings.rs.
import { describe, expect, test } from "bun:test";
import clientFrames from "../crates/core/tests/fixtures/protocol/client_frames.json";
import serverFrames from "../crates/core/tests/fixtures/protocol/server_frames.json";
import * as wasm from "./wasm";

wasm.initWasm();
const SECRET = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
const session = (id: string, file?: string, header_parent?: string) => ({ id, cwd: "/w/proj", file, header_parent });

describe("protocol codec", () => {
	test("client frames encode to one JSON line equal to the fixture", () => {
		for (const frame of clientFrames) {
			const line = wasm.encodeClientFrame(frame as wasm.ClientFrame);
			expect(line.endsWith("\n")).toBe(true);
			expect(line.slice(0, -1).includes("\n")).toBe(false);
			expect(JSON.parse(line)).toEqual(frame);
		}
	});
	test("server frames decode to plain objects", () => {
		for (const frame of serverFrames) {
			expect(wasm.decodeServerFrame(JSON.stringify(frame))).toEqual(frame as wasm.ServerFrame);
		}
	});
	test("bad frames throw a readable error, not a trap", () => {
		expect(() => wasm.decodeServerFrame("{nope")).toThrow(/invalid JSON/);
		expect(() => wasm.encodeClientFrame({ type: "launch" } as never)).toThrow(/unknown variant/);
	});
	test("protocol version matches the fixtures", () => {
		expect(wasm.settings().protocol).toBe(clientFrames[0].protocol as number);
	});
	test("the client's own failures are error frames that keep a report for later", () => {
		const failure = wasm.clientError({ kind: "no_sidecar", path: "/s.sock", cause: "ENOENT" });
		expect(failure).toMatchObject({ type: "error", code: "sidecar_unavailable" });
		expect(failure.message).toContain("omp-discord serve");
		expect(wasm.neverTaken(failure)).toBe(true);
		expect(wasm.neverTaken({ type: "error", code: "not_configured", message: "m" })).toBe(false);
		const answer = wasm.toolAnswer("discord_send", wasm.clientError({ kind: "timed_out", connecting: false }));
		expect(answer.text).toBe(
			"discord_send failed: Discord is unavailable (sidecar_timeout): timed out waiting for the omp-discord sidecar; " +
				"Discord may be slow or unreachable, try again later",
		);
	});
});

describe("settings", () => {
	test("come from the environment, with the sidecar's path rules", () => {
		const at = (env: Record<string, string>) => wasm.shimSettings(env, "box");
		expect(at({ XDG_RUNTIME_DIR: "/run/user/7", HOME: "/home/x" }).socket_path).toBe("/run/user/7/omp-discord/sidecar.sock");
		expect(at({ HOME: "/home/x" }).spool_dir).toBe("/home/x/.local/state/omp-discord/spool");
		expect(at({}).socket_path).toBeNull();
		const settings = at({ OMP_DISCORD_APPROVE_TOOLS: "bash", OMP_DISCORD_REDACT_TOOL_RESULTS: "OFF" });
		expect(settings.approvals).toEqual({ tools: ["bash"], timeout_secs: 600 });
		expect(settings.redact_tool_results).toBe(false);
	});
});

describe("tools and messages", () => {
	test("a tool call becomes a frame the codec accepts, and its answer reads well", () => {
		const shim = new wasm.Shim(wasm.settings(), "test");
		const call = shim.toolCall("discord_read", { limit: 3 }, session("s1"), "call-1");
		expect(call).toMatchObject({ type: "request", wait_ms: 8000, frame: { type: "read", limit: 3, session: { id: "s1" } } });
		if (call.type !== "request") throw new Error("a request");
		expect(() => wasm.encodeClientFrame({ ...call.frame, id: "r1" } as wasm.ClientFrame)).not.toThrow();
		const bad = shim.toolCall("discord_send", { channelId: "#x", message: "m" }, session("s1"), "c");
		expect(bad).toMatchObject({ type: "answer", isError: true });
		expect(bad.type === "answer" && bad.text).toMatch(/^discord_send failed: .*channelId/);
		const answer = wasm.toolAnswer("discord_ask", { type: "answer", id: "r1", answered: true, text: "yes", by: "ana" });
		expect(answer).toEqual({ text: "ana answered in Discord: yes", isError: false });
		shim.free();
	});
	test("each notification is named once, by this process's instance and a counter", () => {
		const shim = new wasm.Shim(wasm.settings(), "a1b2");
		const keys = [1, 2].map((n) => {
			const call = shim.toolCall("discord_notify", { message: `m${n}` }, session("s1"), `c${n}`);
			if (call.type !== "request" || call.frame.type !== "notify") throw new Error("a notify");
			expect(wasm.encodeClientFrame({ ...call.frame, id: "r" } as wasm.ClientFrame)).toContain(`"idempotency_key":"a1b2-`);
			return call.frame.idempotency_key;
		});
		expect(keys[0]).not.toEqual(keys[1]);
		shim.free();
	});
	test("discord_notify is defined with a JSON Schema", () => {
		const notify = wasm.toolDefinitions().find((t) => t.name === "discord_notify");
		const parameters = notify?.parameters as any;
		expect(parameters.type).toBe("object");
		expect(parameters.required).toEqual(["message"]);
		expect(parameters.properties.level.enum).toEqual(["info", "success", "warning", "error"]);
	});
	test("notifications are redacted and never ping", () => {
		const shim = new wasm.Shim(wasm.settings(), "test");
		const call = shim.toolCall("discord_notify", { message: `@everyone ${SECRET}`, level: "error" }, session("s"), "c") as any;
		const payload = call.frame.message;
		const json = JSON.stringify(payload);
		expect(json.includes(SECRET)).toBe(false);
		expect(json.includes("@everyone")).toBe(false);
		expect(payload.allowed_mentions).toEqual({ parse: [] });
		expect(payload.embeds[0].color).toBe(0xed4245);
		expect(payload.embeds[0].footer.text).toBe("omp · proj");
		expect(shim.toolCall("discord_notify", { level: "loud" }, session("s"), "c")).toMatchObject({ isError: true });
		shim.free();
	});
	test("a run becomes a live card, then its summary, as notify frames; muted, nothing", () => {
		const shim = new wasm.Shim(wasm.settings(), "test");
		const start = shim.onEvent(session("s1"), { type: "agent_start" }, 1_000, null);
		expect(start.frames.length).toBe(1);
		const card = start.frames[0] as any;
		expect(card).toMatchObject({ type: "notify", session: { id: "s1", cwd: "/w/proj" } });
		expect(typeof card.key).toBe("string");
		const end = shim.onEvent(
			session("s1"),
			{ type: "agent_end", messages: [{ role: "assistant", stopReason: "stop", content: [{ type: "text", text: "Fixed it." }] }] },
			9_000,
			null,
		);
		expect(end.settle).toBe(true);
		const edit = end.frames.find((f: any) => f.edit && f.key === card.key) as any;
		expect(edit.message.embeds[0].title).toContain("Run finished");
		expect(edit.message.embeds[0].description).toContain("Fixed it.");
		expect(() => wasm.encodeClientFrame({ ...edit, id: "n1" })).not.toThrow();
		expect(shim.onEvent(session("s1"), "garbage", 10_000, null).frames).toEqual([]);
		expect(shim.command(session("s1"), "off", null)).toEqual({ type: "say", notice: { text: "omp-discord: reports for this session are off", level: "info" } });
		expect(shim.onEvent(session("s1"), { type: "agent_start" }, 11_000, null).frames).toEqual([]);
		expect(() => shim.onEvent(session("s2"), { type: "agent_start" }, 1, { level: 3 })).toThrow();
		shim.free();
	});
	test("a subagent's session folds under its parent (task tool layout)", () => {
		const shim = new wasm.Shim(wasm.settings(), "test");
		expect(shim.attach(session("P", "/s/2026_P.jsonl"))?.id).toBe("P");
		const child = session("C", "/s/2026_P/task-1.jsonl", "/s/2026_P.jsonl");
		expect(shim.sessionOf(child).id).toBe("P");
		expect(shim.attach(child)).toBeNull();
		expect(shim.sessionOf(session("M")).id).toBe("M");
		shim.free();
	});
	test("replies: handed on once, steering or waiting", () => {
		const shim = new wasm.Shim(wasm.settings(), "test");
		const reply = { type: "inbound", session_id: "s", message_id: "m1", author_id: "1", text: "hi" } as const;
		expect(shim.inbound(reply, false)).toBe("now");
		shim.onEvent(session("s"), { type: "agent_start" }, 1, null);
		expect(shim.inbound(reply, false)).toBe("follow_up");
		expect(shim.inbound({ ...reply, deliver_as: "steer" }, false)).toBe("now");
		shim.handedOn("m1");
		expect(shim.inbound(reply, true)).toBe("again");
		shim.free();
	});
	test("approvals fail closed", () => {
		const shim = new wasm.Shim(wasm.settings(), "test");
		const gate = shim.approvalGate({ tools: ["bash"], timeout_secs: 5 }, "bash", 1_000);
		expect(gate).toMatchObject({ deadline_ms: 16_000 });
		expect(shim.approvalGate({ tools: ["bash"], timeout_secs: 5 }, "read", 1_000)).toBeUndefined();
		if (!gate) throw new Error("a gate");
		const denied = { type: "decision", id: "1", approved: false, reason: "denied" } as const;
		expect(wasm.approvalStep(gate, denied, 2_000)).toEqual({ type: "block", reason: "Blocked: denied." });
		const lost = wasm.approvalStep(gate, wasm.clientError({ kind: "connection_lost" }), 2_000);
		expect(lost).toMatchObject({ type: "retry", after_ms: 500, gate: { unreachable_since_ms: 2_000 } });
		expect(wasm.approvalBlocked(undefined)).toContain("no decision arrived");
		shim.free();
	});
	test("tool results: only text blocks are redacted, one string at a time", async () => {
		const { redactToolResult } = await import("./index");
		const image = { type: "image", data: `${SECRET}aGk=`, mimeType: "image/png" };
		const content = [{ type: "text", text: `token: ${SECRET}` }, image, { type: "text", text: "clean" }];
		const result = redactToolResult(content, { exitCode: 0 }) as any;
		expect(result.content[0].text).toBe("token: [REDACTED:github-token]");
		expect(result.content[1]).toBe(image);
		expect(result.content[2]).toBe(content[2]);
		expect(result.details).toEqual({ exitCode: 0, ompDiscordRedactions: { count: 1, kinds: { "github-token": 1 } } });
		expect(redactToolResult([{ type: "text", text: "clean" }], undefined)).toBeUndefined();
		expect((redactToolResult(`raw ${SECRET}`, undefined) as any).content).toBe("raw [REDACTED:github-token]");
		expect((redactToolResult(`raw ${SECRET}`, [1]) as any).details).toEqual([1]);
		for (const odd of [null, 42, [1, "x", { type: "text" }], { type: "text", text: SECRET }]) {
			expect(() => redactToolResult(odd, undefined)).not.toThrow();
		}
	});
	test("redactText matches the native rules", () => {
		expect(wasm.redactText(`key=${SECRET}`)).toContain("[REDACTED:");
		expect(wasm.redactText("nothing here")).toBe("nothing here");
	});
	test("text crosses into wasm as UTF-8 and comes back whole", () => {
		const text = `héllo 日本 🦀 token=${SECRET} and ${SECRET} end é`;
		expect(wasm.redactText(text)).toBe("héllo 日本 🦀 token=[REDACTED:github-token] and [REDACTED:github-token] end é");
		const block = wasm.redactToolResult([{ type: "text", text }], undefined, false) as any;
		expect(block.content[0].text).toBe(wasm.redactText(text));
		expect(block.details).toEqual({ ompDiscordRedactions: { count: 2, kinds: { "github-token": 2 } } });
		expect(wasm.redactToolResult("café, nothing here 🦀", undefined, false)).toBeUndefined();
	});
});
