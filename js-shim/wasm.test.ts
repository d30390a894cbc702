// The wasm build, called from Bun exactly as the shim calls it. Golden frames
// are the same files the Rust tests read.
import { describe, expect, test } from "bun:test";
import clientFrames from "../crates/core/tests/fixtures/protocol/client_frames.json";
import serverFrames from "../crates/core/tests/fixtures/protocol/server_frames.json";
import * as wasm from "./wasm";

wasm.initWasm();

describe("protocol codec", () => {
	test("client frames encode to one JSON line equal to the fixture", () => {
		for (const frame of clientFrames) {
			const line = wasm.encodeClientFrame(frame);
			expect(line.endsWith("\n")).toBe(true);
			expect(line.slice(0, -1).includes("\n")).toBe(false);
			expect(JSON.parse(line)).toEqual(frame);
		}
	});
	test("server frames decode to plain objects", () => {
		for (const frame of serverFrames) {
			expect(wasm.decodeServerFrame(JSON.stringify(frame))).toEqual(frame);
		}
	});
	test("bad frames throw a readable error, not a trap", () => {
		expect(() => wasm.decodeServerFrame("{nope")).toThrow(/invalid JSON/);
		expect(() => wasm.encodeClientFrame({ type: "launch" })).toThrow(/unknown variant/);
	});
	test("protocol version matches the fixtures", () => {
		expect(wasm.protocolVersion()).toBe(clientFrames[0].protocol);
	});
});

describe("tools and messages", () => {
	test("a tool call becomes a frame the codec accepts, and its answer reads well", () => {
		const session = { id: "s1", cwd: "/p" };
		const frame = wasm.toolRequest("discord_read", { limit: 3 }, session, "call-1", "p") as any;
		expect(frame).toMatchObject({ type: "read", limit: 3, session: { id: "s1" } });
		expect(() => wasm.encodeClientFrame({ ...frame, id: "r1" })).not.toThrow();
		expect(() => wasm.toolRequest("discord_send", { channelId: "#x", message: "m" }, session, "c", "p")).toThrow(/channelId/);
		const answer = wasm.toolAnswer("discord_ask", { type: "answer", id: "r1", answered: true, text: "yes", by: "ana" }) as any;
		expect(answer).toEqual({ text: "ana answered in Discord: yes", isError: false });
	});
	test("discord_notify is defined with a JSON Schema", () => {
		const tools = wasm.toolDefinitions() as { name: string; parameters: any }[];
		const notify = tools.find((t) => t.name === "discord_notify");
		expect(notify?.parameters.type).toBe("object");
		expect(notify?.parameters.required).toEqual(["message"]);
		expect(notify?.parameters.properties.level.enum).toEqual(["info", "success", "warning", "error"]);
	});
	test("notifications are redacted and never ping", () => {
		const secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
		const payload = wasm.buildNotification({ message: `@everyone ${secret}`, level: "error" }, "proj") as any;
		const json = JSON.stringify(payload);
		expect(json.includes(secret)).toBe(false);
		expect(json.includes("@everyone")).toBe(false);
		expect(payload.allowed_mentions).toEqual({ parse: [] });
		expect(payload.embeds[0].color).toBe(0xed4245);
		expect(payload.embeds[0].footer.text).toBe("omp · proj");
	});
	test("a bad notification is an error, not a trap", () => {
		expect(() => wasm.buildNotification({ level: "loud" }, "p")).toThrow();
	});
	test("a run becomes a live card, then its summary", () => {
		const reporter = new wasm.Reporter(null, { id: "s1", cwd: "/w/proj", host: "box" });
		const start = reporter.onEvent({ type: "agent_start" }, 1_000) as any[];
		expect(start.length).toBe(1);
		expect(start[0].kind).toBe("post");
		const key = start[0].key;
		expect(typeof key).toBe("string");
		const end = reporter.onEvent(
			{
				type: "agent_end",
				messages: [{ role: "assistant", stopReason: "stop", content: [{ type: "text", text: "Fixed it." }] }],
			},
			9_000,
		) as any[];
		const edit = end.find((r) => r.kind === "edit" && r.key === key);
		expect(edit.payload.embeds[0].title).toContain("Run finished");
		expect(edit.payload.embeds[0].description).toContain("Fixed it.");
		expect(reporter.onEvent("garbage", 10_000)).toEqual([]);
		expect(() => reporter.setLevel("loud")).toThrow();
		reporter.setLevel("quiet");
		reporter.free();
	});
	test("socket path agrees with the sidecar's rules", () => {
		expect(wasm.socketPath(undefined, "/run/user/7", undefined, "/home/x")).toBe("/run/user/7/omp-discord/sidecar.sock");
		expect(wasm.socketPath("", "", "", "/home/x")).toBe("/home/x/.local/state/omp-discord/sidecar.sock");
		expect(wasm.socketPath(undefined, undefined, undefined, undefined)).toBeUndefined();
	});
	test("tool results: only text blocks are redacted, one string at a time", async () => {
		const { redactToolResult } = await import("./index");
		const secret = `ghp_${"0123456789abcdefghijklmnopqrstuvwxyzAB"}`; // fake, made-up token
		const image = { type: "image", data: `${secret}aGk=`, mimeType: "image/png" };
		const content = [{ type: "text", text: `token: ${secret}` }, image, { type: "text", text: "clean" }];
		const result = redactToolResult(content, { exitCode: 0 }) as any;
		expect(result.content[0].text).toBe("token: [REDACTED:github-token]");
		expect(result.content[1]).toBe(image);
		expect(result.content[2]).toBe(content[2]);
		expect(result.details).toEqual({ exitCode: 0, ompDiscordRedactions: { count: 1, kinds: { "github-token": 1 } } });
		expect(redactToolResult([{ type: "text", text: "clean" }], undefined)).toBeUndefined();
		expect((redactToolResult(`raw ${secret}`, undefined) as any).content).toBe("raw [REDACTED:github-token]");
		for (const odd of [null, 42, [1, "x", { type: "text" }], { type: "text", text: secret }]) {
			expect(() => redactToolResult(odd, undefined)).not.toThrow();
		}
	});
	test("a subagent's session folds under its parent (task tool layout)", async () => {
		const { parentOf, sessionOf } = await import("./index");
		const ctx = (id: string, file: string | undefined, parentSession?: string) =>
			({
				cwd: "/w/proj",
				sessionManager: {
					getSessionId: () => id,
					getSessionFile: () => file,
					getHeader: () => ({ parentSession }),
				},
			}) as any;
		const parent = ctx("P", "/s/2026_P.jsonl");
		expect(parentOf(parent)).toBeUndefined();
		const child = ctx("C", "/s/2026_P/task-1.jsonl", "/s/2026_P.jsonl");
		expect(parentOf(child)).toBe("P");
		expect(sessionOf(child).id).toBe("P");
		// A new or branched session names its predecessor too, but is not in its artifacts dir.
		expect(parentOf(ctx("N", "/s/2026_N.jsonl", "/s/2026_P.jsonl"))).toBeUndefined();
		// Without session files (--no-session) nothing can be told: a session of its own.
		expect(parentOf(ctx("M", undefined))).toBeUndefined();
	});
	test("redactText matches the native rules", () => {
		expect(wasm.redactText("key=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB")).toContain("[REDACTED:"); // fake, made-up token
		expect(wasm.redactText("nothing here")).toBe("nothing here");
	});
	test("text crosses into wasm as UTF-8 and comes back whole", () => {
		const secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
		const text = `héllo 日本 🦀 token=${secret} and ${secret} end é`;
		expect(wasm.redactText(text)).toBe("héllo 日本 🦀 token=[REDACTED:github-token] and [REDACTED:github-token] end é");
		const block = wasm.redactToolText(text, false) as { text: string; report: { count: number; kinds: Record<string, number> } };
		expect(block.text).toBe(wasm.redactText(text));
		expect(block.report).toEqual({ count: 2, kinds: { "github-token": 2 } });
		expect(wasm.redactToolText("café, nothing here 🦀", false)).toBeUndefined();
	});
});
