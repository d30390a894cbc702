// The connection to `omp-discord serve`: one per process, shared by every
// factory run. Every call has a deadline; when no sidecar answers, start one
// (detached, so it outlives this OMP process) and retry until the deadline.
// What to wait, keep and say comes from core (`settings()`, `clientError`).
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { connect, type Socket } from "node:net";
import * as wasm from "./wasm";
import type { ClientFailure, ClientFrame, ServerFrame } from "./wasm";

/** A client frame before the connection gives it an id. */
export type Request = ClientFrame extends infer F ? (F extends { id: string } ? Omit<F, "id"> & { id?: string } : F) : never;
type Frame<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;

/** A failure made here; core words it (`clientError`). */
class Failure extends Error {
	constructor(readonly failure: ClientFailure) {
		super(wasm.clientError(failure).message);
	}
}

/** The sidecar binary: OMP_DISCORD_BIN, else this checkout's release build, else the platform package's (an optional dependency), else PATH. */
function sidecarBinary(): string {
	const built = join(dirname(import.meta.dir), "target", "release", "omp-discord");
	if (existsSync(built)) return built;
	try {
		const manifest = `omp-discord-${process.platform}-${process.arch}/package.json`;
		const packaged = join(dirname(createRequire(`${import.meta.dir}/`).resolve(manifest)), "bin", "omp-discord");
		if (existsSync(packaged)) return packaged;
	} catch {} // No platform package for this system: PATH it is.
	return "omp-discord";
}

class SidecarClient {
	private readonly settings = wasm.settings();
	private socket: Socket | undefined;
	private connecting: Promise<Socket> | undefined;
	private pending = new Map<string, (frame: ServerFrame) => void>();
	private accepted = new Set<string>();
	/** Requests that are done once journaled (`accepted`), not delivered. */
	private doneWhenAccepted = new Set<string>();
	/** Sessions this process serves; attached again after every reconnect. */
	private attached = new Map<string, Record<string, unknown>>();
	/** From the sidecar's welcome: its `[report]` table, approval policy, machine and spool. */
	welcome: Frame<"welcome"> | undefined;
	private inboundHandler: ((frame: Frame<"inbound">) => void) | undefined;
	private controlHandler: ((frame: Frame<"control">) => void) | undefined;
	/** Reports dropped because they could not be encoded, and the last reason. */
	dropped = 0;
	lastDropped = "";
	/** Reports not yet taken by a sidecar, oldest first. */
	private kept: ClientFrame[] = [];
	/** The chain that hands `kept` over, one at a time, so order holds and nothing goes twice. */
	private draining: Promise<void> = Promise.resolve();
	private nextId = 0;
	private spawned = false;
	private buffer = "";

	/** Receives `/omp abort` and the like for attached sessions. */
	onControl(handler: (frame: Frame<"control">) => void): void {
		this.controlHandler = handler;
	}

	/** Receives replies written in the threads of attached sessions. */
	onInbound(handler: (frame: Frame<"inbound">) => void): void {
		this.inboundHandler = handler;
	}

	/** Tells the sidecar this process serves `session`, so its thread's replies come here. */
	attach(session: Record<string, unknown> & { id: string }): Promise<ServerFrame> {
		this.attached.set(session.id, session);
		return this.request({ type: "attach", session }, this.settings.deadlines.attach_ms);
	}

	/**
	 * Hands `frames` (notify frames) to the sidecar after any kept earlier, in
	 * order; each is done once journaled. What no sidecar took stays kept (up
	 * to `max_kept`) for the next call, or for `spool()` at shutdown.
	 */
	sendInOrder(frames: ClientFrame[], deadlineMs = this.settings.deadlines.notify_ms): Promise<void> {
		this.kept.push(...frames);
		if (this.kept.length > this.settings.max_kept) this.kept.splice(0, this.kept.length - this.settings.max_kept);
		this.draining = this.draining.then(async () => {
			while (this.kept.length > 0) {
				let answer: ServerFrame;
				try {
					answer = await this.request(this.kept[0], deadlineMs, true);
				} catch (err) {
					// A frame that cannot even be encoded would block every later one: drop it
					// (counted for `/discord status`; printing would garble OMP's terminal).
					this.lastDropped = describe(err);
					this.dropped += 1;
					this.kept.shift();
					continue;
				}
				if (wasm.neverTaken(answer)) return;
				this.kept.shift();
			}
		});
		return this.draining;
	}

	/**
	 * Writes what no sidecar took to `<state>/spool/<time>-<pid>.jsonl` (0600),
	 * which the next sidecar journals when it starts. Synchronous, so it also
	 * works from a process `exit` handler.
	 */
	spool(): string | undefined {
		const dir = this.settings.spool_dir;
		if (this.kept.length === 0 || !dir) return undefined;
		try {
			mkdirSync(dir, { recursive: true, mode: 0o700 });
			const file = join(dir, `${Date.now()}-${process.pid}.jsonl`);
			// Written aside, then renamed: a sidecar importing meanwhile never sees half a file.
			writeFileSync(`${file}.tmp`, wasm.spoolText(this.kept, process.pid), { mode: 0o600 });
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
		const dir = this.settings.spool_dir;
		// An older sidecar does not say where it imports from: leave its spool alone.
		if (!dir || !this.welcome?.spool) return;
		if (this.welcome.host === this.settings.host && this.welcome.spool === dir) return;
		let names: string[];
		try {
			names = readdirSync(dir).filter((name) => name.endsWith(".jsonl")).sort();
		} catch {
			return;
		}
		const frames: ClientFrame[] = [];
		for (const name of names) {
			const claimed = join(dir, `${name}.replaying-${process.pid}`);
			try {
				renameSync(join(dir, name), claimed);
				frames.push(...wasm.spooledFrames(readFileSync(claimed, "utf8")));
				unlinkSync(claimed);
			} catch {} // Taken by another, or unreadable: left claimed, where `/discord status` users can find it.
		}
		if (frames.length > 0) void this.sendInOrder(frames, this.settings.deadlines.replay_ms);
	}

	/**
	 * Sends a client frame (an id is assigned) and waits for its answer; a failure
	 * is an error frame. With `untilAccepted`, a notify is done once the sidecar has
	 * journaled it: from then on it is delivered even if this process exits.
	 */
	async request(frame: Request, deadlineMs: number, untilAccepted = false): Promise<ServerFrame> {
		if (this.pending.size >= this.settings.max_pending) return wasm.clientError({ kind: "queue_full" });
		const id = `${process.pid}-${++this.nextId}`;
		const deadline = Date.now() + deadlineMs;
		let socket: Socket;
		try {
			socket = await withDeadline(this.connection(), deadline, true);
		} catch (err) {
			return failed(err, true);
		}
		const answer = new Promise<ServerFrame>((resolve) => this.pending.set(id, resolve));
		if (untilAccepted) this.doneWhenAccepted.add(id);
		try {
			socket.write(wasm.encodeClientFrame({ ...frame, id } as ClientFrame));
			return await withDeadline(answer, deadline, false);
		} catch (err) {
			// Journaled, but Discord has not confirmed it yet: it will still be delivered.
			if (this.accepted.has(id)) return { type: "accepted", id, seq: 0 };
			return failed(err, false);
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
		const path = this.settings.socket_path;
		if (!path) throw new Failure({ kind: "no_socket_path" });
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
					socket.write(wasm.encodeClientFrame({ type: "attach", id: `${process.pid}-${++this.nextId}`, session } as ClientFrame));
				}
				queueMicrotask(() => this.replaySpool());
				return socket;
			} catch (err) {
				if (err instanceof Failure) throw err;
				if (!this.spawned) this.spawnSidecar();
				if (Date.now() - started > this.settings.deadlines.connect_ms) throw new Failure({ kind: "no_sidecar", path, cause: describe(err) });
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
			socket.once("error", (err) => (welcomed ? this.fail() : reject(err)));
			socket.on("close", () => this.fail());
			socket.on("data", (chunk: string) => {
				this.buffer += chunk;
				let newline: number;
				while ((newline = this.buffer.indexOf("\n")) >= 0) {
					const line = this.buffer.slice(0, newline);
					this.buffer = this.buffer.slice(newline + 1);
					let frame: ServerFrame;
					try {
						frame = wasm.decodeServerFrame(line);
					} catch {
						continue;
					}
					if (!welcomed) {
						if (frame.type === "welcome") {
							welcomed = true;
							this.welcome = frame;
							resolve(socket);
						} else if (frame.type === "error") {
							reject(new Failure({ kind: "failed", connecting: true, cause: frame.message }));
							socket.destroy();
						}
					} else if (frame.type === "inbound") {
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
				const { protocol, client, host } = this.settings;
				socket.write(wasm.encodeClientFrame({ type: "hello", protocol, client, pid: process.pid, host }));
			});
		});
	}

	private fail(): void {
		this.socket?.destroy();
		this.socket = undefined;
		this.buffer = "";
		for (const resolve of this.pending.values()) resolve(wasm.clientError({ kind: "connection_lost" }));
		this.pending.clear();
	}

	private spawnSidecar(): void {
		this.spawned = true;
		// A machine that reaches another machine's sidecar (a forwarded socket) must not start its own.
		if (!this.settings.spawn_sidecar) return;
		try {
			// Detached and in its own session: the sidecar serves every OMP process
			// of this user and must not die with this one (or with its terminal).
			const child = spawn(this.settings.sidecar_bin ?? sidecarBinary(), this.settings.sidecar_args, {
				detached: true,
				stdio: "ignore",
				env: process.env,
			});
			child.on("error", () => {});
			child.unref();
		} catch {} // Reported through the connect failure that follows.
	}
}

function describe(err: unknown): string {
	return err instanceof Error ? err.message : String(err);
}

function failed(err: unknown, connecting: boolean): Frame<"error"> {
	return wasm.clientError(err instanceof Failure ? err.failure : { kind: "failed", connecting, cause: describe(err) });
}

async function withDeadline<T>(promise: Promise<T>, deadline: number, connecting: boolean): Promise<T> {
	let timer: ReturnType<typeof setTimeout> | undefined;
	const timeout = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new Failure({ kind: "timed_out", connecting })), Math.max(0, deadline - Date.now()));
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
