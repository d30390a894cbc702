// The connection to `omp-discord serve`: one per process, shared by every
// factory run. Every call has a deadline; when no sidecar answers, start one
// (detached, so it outlives this OMP process) and retry until the deadline.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { hostname } from "node:os";
import { dirname, join } from "node:path";
import { connect, type Socket } from "node:net";
import * as wasm from "./wasm";

/** Which tool calls wait for a person (from the sidecar's configuration). */
export type ApprovalPolicy = { tools: string[]; timeout_secs: number };

export type ServerFrame =
	| { type: "welcome"; protocol: number; version: string; report?: unknown; approvals?: ApprovalPolicy; host?: string; spool?: string }
	| { type: "decision"; id: string; approved: boolean; reason: string }
	| { type: "accepted"; id: string; seq: number }
	| { type: "delivered"; id: string; channel_id: string; message_id: string }
	| { type: "status"; id: string; status: unknown }
	| { type: "shutting_down"; id: string }
	| { type: "ok"; id: string }
	| { type: "inbound"; session_id: string; message_id: string; author_id: string; text: string; deliver_as?: "follow_up" | "steer" }
	| { type: "messages"; id: string; channel_id: string; messages: unknown[] }
	| { type: "directory"; id: string; guilds: unknown[] }
	| { type: "answer"; id: string; answered: boolean; text: string; by?: string }
	| { type: "control"; session_id: string; action: "abort" | "retry" | (string & {}) }
	| { type: "error"; id?: string; code: string; message: string };

/**
 * What a call to the sidecar came to. `queued` means the sidecar journaled the
 * message but Discord has not confirmed it before the deadline: it will still
 * be delivered.
 */
export type Outcome =
	| { ok: true; frame: ServerFrame }
	| { ok: true; queued: true }
	| { ok: false; code: string; message: string };

const CONNECT_DEADLINE_MS = 4000;
/** How long each spooled report handed over at connect waits to be journaled. */
const REPLAY_DEADLINE_MS = 8000;
const MAX_PENDING = 256;
/** Reports kept while no sidecar answers; the oldest go first when there are more. */
const MAX_KEPT = 1000;
/** Outcomes that mean the sidecar never took the frame: keep it and try again later. */
const UNREACHABLE = new Set(["sidecar_unavailable", "sidecar_timeout", "queue_full"]);

function socketPath(): string {
	const env = process.env;
	const path = wasm.socketPath(env.OMP_DISCORD_SOCKET, env.XDG_RUNTIME_DIR, env.XDG_STATE_HOME, env.HOME);
	if (!path) throw new Error("cannot place the sidecar socket: set OMP_DISCORD_SOCKET or HOME");
	return path;
}

/**
 * The sidecar binary: OMP_DISCORD_BIN, else this checkout's release build,
 * else the binary of the platform package installed with this one (e.g.
 * omp-discord-linux-x64, an optional dependency), else PATH.
 */
function sidecarBinary(): string {
	if (process.env.OMP_DISCORD_BIN) return process.env.OMP_DISCORD_BIN;
	const built = join(dirname(import.meta.dir), "target", "release", "omp-discord");
	if (existsSync(built)) return built;
	try {
		const manifest = `omp-discord-${process.platform}-${process.arch}/package.json`;
		const packaged = join(dirname(createRequire(`${import.meta.dir}/`).resolve(manifest)), "bin", "omp-discord");
		if (existsSync(packaged)) return packaged;
	} catch {
		// No platform package for this system: PATH it is.
	}
	return "omp-discord";
}

/** Where this process spools reports no sidecar took (`<state>/spool`). */
function localSpoolDir(): string | undefined {
	const env = process.env;
	return wasm.spoolDir(env.OMP_DISCORD_STATE_DIR, env.XDG_STATE_HOME, env.HOME);
}

class SidecarClient {
	private socket: Socket | undefined;
	private connecting: Promise<Socket> | undefined;
	private pending = new Map<string, (frame: ServerFrame) => void>();
	private accepted = new Set<string>();
	/** Sessions this process serves; attached again after every reconnect. */
	private attached = new Map<string, Record<string, unknown>>();
	/** The sidecar's `[report]` configuration, from its welcome. */
	reportConfig: unknown = null;
	/** The sidecar's approval policy, from its welcome. */
	private approvalPolicy: ApprovalPolicy | undefined;
	/** The sidecar's machine and the spool directory it imports, from its welcome. */
	private sidecarHost = "";
	private sidecarSpool = "";

	/**
	 * The policy the sidecar announced; before any welcome, the tools named in
	 * OMP_DISCORD_APPROVE_TOOLS, so an unreachable sidecar never lets a
	 * guarded call through.
	 */
	approvalPolicyOrEnv(): ApprovalPolicy {
		if (this.approvalPolicy) return this.approvalPolicy;
		const tools = (process.env.OMP_DISCORD_APPROVE_TOOLS ?? "").split(",").map((t) => t.trim()).filter(Boolean);
		return { tools, timeout_secs: Number(process.env.OMP_DISCORD_APPROVAL_TIMEOUT) || 600 };
	}
	/** Requests that are done once journaled (`accepted`), not delivered. */
	private doneWhenAccepted = new Set<string>();
	private inboundHandler: ((frame: Extract<ServerFrame, { type: "inbound" }>) => void) | undefined;
	private controlHandler: ((frame: Extract<ServerFrame, { type: "control" }>) => void) | undefined;

	/** Receives `/omp abort` and the like for attached sessions. */
	onControl(handler: (frame: Extract<ServerFrame, { type: "control" }>) => void): void {
		this.controlHandler = handler;
	}

	/** Receives replies written in the threads of attached sessions. */
	onInbound(handler: (frame: Extract<ServerFrame, { type: "inbound" }>) => void): void {
		this.inboundHandler = handler;
	}

	/** Tells the sidecar this process serves `session`, so its thread's replies come here. */
	async attach(session: Record<string, unknown> & { id: string }, deadlineMs: number): Promise<Outcome> {
		this.attached.set(session.id, session);
		return this.request({ type: "attach", session }, deadlineMs);
	}
	/** Reports dropped because they could not be encoded, and the last reason. */
	dropped = 0;
	lastDropped = "";
	/** Reports not yet taken by a sidecar, oldest first. */
	private kept: Record<string, unknown>[] = [];
	/** The chain that hands `kept` over, one at a time, so order holds and nothing goes twice. */
	private draining: Promise<void> = Promise.resolve();

	/**
	 * Hands `frames` (notify frames) to the sidecar after any kept earlier, in
	 * order; each is done once journaled. What no sidecar took stays kept (up
	 * to MAX_KEPT) for the next call, or for `spool()` at shutdown.
	 */
	sendInOrder(frames: Record<string, unknown>[], deadlineMs: number): Promise<void> {
		this.kept.push(...frames);
		if (this.kept.length > MAX_KEPT) this.kept.splice(0, this.kept.length - MAX_KEPT);
		this.draining = this.draining.then(async () => {
			while (this.kept.length > 0) {
				let outcome: Outcome;
				try {
					outcome = await this.request(this.kept[0], deadlineMs, true);
				} catch (err) {
					// A frame that cannot even be encoded would block every later one: drop it
					// (counted for `/discord status`; printing would garble OMP's terminal).
					this.lastDropped = describe(err);
					this.dropped += 1;
					this.kept.shift();
					continue;
				}
				if (!outcome.ok && UNREACHABLE.has(outcome.code)) return;
				this.kept.shift();
			}
		});
		return this.draining;
	}

	/**
	 * Writes what no sidecar took to `<state>/spool/<pid>-<time>.jsonl` (0600),
	 * which the next sidecar journals when it starts. Synchronous, so it also
	 * works from a process `exit` handler.
	 */
	spool(): string | undefined {
		if (this.kept.length === 0) return undefined;
		const dir = localSpoolDir();
		if (!dir) return undefined;
		try {
			mkdirSync(dir, { recursive: true, mode: 0o700 });
			const file = join(dir, `${Date.now()}-${process.pid}.jsonl`);
			const lines = this.kept.map((frame, n) => wasm.encodeClientFrame({ ...frame, id: `spool-${process.pid}-${n}` }));
			// Written aside, then renamed: a sidecar importing meanwhile never sees half a file.
			writeFileSync(`${file}.tmp`, lines.join(""), { mode: 0o600 });
			renameSync(`${file}.tmp`, file);
			this.kept = [];
			return file;
		} catch {
			return undefined;
		}
	}

	/**
	 * Hands over the reports spooled on this machine when the sidecar cannot
	 * import them itself: it runs on another machine (a socket forwarded over
	 * SSH) or reads another state directory. Each file is claimed by renaming
	 * it, as the sidecar does, so exactly one of them takes it; what is not
	 * journaled before this process ends is spooled again at exit.
	 */
	private replaySpool(): void {
		const dir = localSpoolDir();
		// An older sidecar does not say where it imports from: leave its spool alone.
		if (!dir || !this.sidecarSpool) return;
		if (this.sidecarHost === hostname() && this.sidecarSpool === dir) return;
		let names: string[];
		try {
			names = readdirSync(dir).filter((name) => name.endsWith(".jsonl")).sort();
		} catch {
			return;
		}
		const frames: Record<string, unknown>[] = [];
		for (const name of names) {
			const claimed = join(dir, `${name}.replaying-${process.pid}`);
			try {
				renameSync(join(dir, name), claimed);
			} catch {
				continue;
			}
			try {
				for (const line of readFileSync(claimed, "utf8").split("\n")) {
					try {
						const frame = JSON.parse(line);
						if (frame?.type === "notify") frames.push(frame);
					} catch {
						// A torn or foreign line: the rest of the file still counts.
					}
				}
				unlinkSync(claimed);
			} catch {
				// Unreadable: left claimed, where `/discord status` users can find it.
			}
		}
		if (frames.length > 0) void this.sendInOrder(frames, REPLAY_DEADLINE_MS);
	}

	private nextId = 0;
	private spawned = false;
	private buffer = "";

	/**
	 * Sends a client frame (without `id`; one is assigned) and waits for its answer.
	 * With `untilAccepted`, a notify is done once the sidecar has journaled it:
	 * from then on it is delivered even if this process exits.
	 */
	async request(frame: Record<string, unknown>, deadlineMs: number, untilAccepted = false): Promise<Outcome> {
		if (this.pending.size >= MAX_PENDING) {
			return { ok: false, code: "queue_full", message: "too many Discord requests are waiting; this one was dropped" };
		}
		const id = `${process.pid}-${++this.nextId}`;
		const deadline = Date.now() + deadlineMs;
		let socket: Socket;
		try {
			socket = await withDeadline(this.connection(), deadline, "connecting to the omp-discord sidecar");
		} catch (err) {
			return { ok: false, code: "sidecar_unavailable", message: describe(err) };
		}
		const answer = new Promise<ServerFrame>((resolve) => this.pending.set(id, resolve));
		if (untilAccepted) this.doneWhenAccepted.add(id);
		try {
			socket.write(wasm.encodeClientFrame({ ...frame, id }));
			const reply = await withDeadline(answer, deadline, "waiting for the omp-discord sidecar");
			if (reply.type === "error") return { ok: false, code: reply.code, message: reply.message };
			return { ok: true, frame: reply };
		} catch (err) {
			if (this.accepted.has(id)) return { ok: true, queued: true };
			return { ok: false, code: "sidecar_timeout", message: describe(err) };
		} finally {
			this.pending.delete(id);
			this.accepted.delete(id);
			this.doneWhenAccepted.delete(id);
		}
	}

	private connection(): Promise<Socket> {
		if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
		this.connecting ??= this.open().finally(() => {
			this.connecting = undefined;
		});
		return this.connecting;
	}

	private async open(): Promise<Socket> {
		const path = socketPath();
		const started = Date.now();
		let delay = 25;
		for (;;) {
			try {
				const socket = await this.handshake(path);
				// An idle connection must not keep OMP alive after its run (print mode).
				socket.unref();
				this.socket = socket;
				// A new sidecar (or a restarted one) learns again which sessions live here.
				for (const session of this.attached.values()) {
					socket.write(wasm.encodeClientFrame({ type: "attach", id: `${process.pid}-${++this.nextId}`, session }));
				}
				queueMicrotask(() => this.replaySpool());
				return socket;
			} catch (err) {
				if (isProtocolError(err)) throw err;
				if (!this.spawned) this.spawnSidecar();
				if (Date.now() - started > CONNECT_DEADLINE_MS) {
					throw new Error(`no omp-discord sidecar answered at ${path} (${describe(err)}); start it with \`omp-discord serve\``);
				}
				await Bun.sleep(delay);
				delay = Math.min(delay * 2, 400);
			}
		}
	}

	private handshake(path: string): Promise<Socket> {
		return new Promise((resolve, reject) => {
			const socket = connect(path);
			let welcomed = false;
			socket.setEncoding("utf8");
			socket.once("error", (err) => (welcomed ? this.fail(err) : reject(err)));
			socket.on("close", () => this.fail(new Error("the sidecar closed the connection")));
			socket.on("data", (chunk: string) => {
				this.buffer += chunk;
				let newline: number;
				while ((newline = this.buffer.indexOf("\n")) >= 0) {
					const line = this.buffer.slice(0, newline);
					this.buffer = this.buffer.slice(newline + 1);
					let frame: ServerFrame;
					try {
						frame = wasm.decodeServerFrame(line) as ServerFrame;
					} catch {
						continue;
					}
					if (!welcomed) {
						if (frame.type === "welcome") {
							welcomed = true;
							this.reportConfig = frame.report ?? null;
							if (frame.approvals) this.approvalPolicy = frame.approvals;
							this.sidecarHost = frame.host ?? "";
							this.sidecarSpool = frame.spool ?? "";
							resolve(socket);
						} else if (frame.type === "error") {
							reject(new ProtocolError(frame.message));
							socket.destroy();
						}
						continue;
					}
					if (frame.type === "inbound") {
						this.inboundHandler?.(frame);
					} else if (frame.type === "control") {
						this.controlHandler?.(frame);
					} else if (frame.type === "accepted") {
						// Journaled: the final answer (delivered or error) follows.
						this.accepted.add(frame.id);
						if (this.doneWhenAccepted.has(frame.id)) this.pending.get(frame.id)?.(frame);
					} else if ("id" in frame && frame.id) {
						this.pending.get(frame.id)?.(frame);
					}
				}
			});
			socket.once("connect", () => {
				socket.write(
					wasm.encodeClientFrame({
						type: "hello",
						protocol: wasm.protocolVersion(),
						client: "shim/0.1.0",
						pid: process.pid,
						host: hostname(),
					}),
				);
			});
		});
	}

	private fail(_err: unknown): void {
		this.socket?.destroy();
		this.socket = undefined;
		this.buffer = "";
		for (const resolve of this.pending.values()) {
			resolve({ type: "error", code: "sidecar_unavailable", message: "the connection to the sidecar was lost" });
		}
		this.pending.clear();
	}

	private spawnSidecar(): void {
		this.spawned = true;
		// A machine that reaches another machine's sidecar (a forwarded socket) must not start its own.
		if (["0", "off", "false", "no"].includes((process.env.OMP_DISCORD_SPAWN ?? "").trim().toLowerCase())) return;
		try {
			// Detached and in its own session: the sidecar serves every OMP process
			// of this user and must not die with this one (or with its terminal).
			const child = spawn(sidecarBinary(), ["serve", "--exit-when-idle", "600"], {
				detached: true,
				stdio: "ignore",
				env: process.env,
			});
			child.on("error", () => {});
			child.unref();
		} catch {
			// Reported through the connect failure that follows.
		}
	}
}

class ProtocolError extends Error {}
function isProtocolError(err: unknown): boolean {
	return err instanceof ProtocolError;
}

function describe(err: unknown): string {
	return err instanceof Error ? err.message : String(err);
}

async function withDeadline<T>(promise: Promise<T>, deadline: number, what: string): Promise<T> {
	let timer: ReturnType<typeof setTimeout> | undefined;
	const timeout = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new Error(`timed out ${what}`)), Math.max(0, deadline - Date.now()));
	});
	try {
		return await Promise.race([promise, timeout]);
	} finally {
		clearTimeout(timer);
	}
}

const KEY = Symbol.for("omp-discord.sidecar");
/** The per-process sidecar client. */
export function sidecar(): SidecarClient {
	const global = globalThis as unknown as Record<symbol, SidecarClient | undefined>;
	if (!global[KEY]) {
		const client = new SidecarClient();
		global[KEY] = client;
		// Whatever is still kept when the process ends waits in the spool for the next sidecar.
		process.on("exit", () => client.spool());
	}
	return global[KEY];
}
