// The connection to `omp-discord serve`: one per process, shared by every factory run. Every call has a deadline;
// when no sidecar answers, start one (detached, so it outlives this OMP process) and retry until the deadline. A
// sidecar is started again, with a capped and jittered backoff, however often it goes away; one that accepts the
// connection but never answers (stopped, hung) counts as absent. Deadlines, bounds and wording come from core.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { connect, type Socket } from "node:net";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import * as wasm from "./wasm";
import type { ClientFailure, ClientFrame, ServerFrame, SessionRef } from "./wasm";

/** A client frame before the connection gives it an id. */
export type Request = ClientFrame extends infer F ? (F extends { id: string } ? Omit<F, "id"> & { id?: string } : F) : never;
type Frame<T extends ServerFrame["type"]> = Extract<ServerFrame, { type: T }>;
type Waiter = { resolve: (frame: ServerFrame) => void; accepted: boolean; untilAccepted: boolean };

/** A failure of this client; core words it. */
class Failure extends Error {
	constructor(readonly failure: ClientFailure) {
		super(wasm.clientError(failure).message);
	}
}

class SidecarClient {
	private readonly settings = wasm.settings();
	private socket: Socket | undefined;
	private connecting: Promise<Socket> | undefined;
	private waiting = new Map<string, Waiter>();
	/** Sessions this process serves; attached again after every reconnect. */
	private attached = new Map<string, SessionRef>();
	/** The sidecar's welcome: its `[report]` table, approval policy, machine and spool. */
	welcome: Frame<"welcome"> | undefined;
	/** Receive replies written in the threads of attached sessions, and `/omp abort` and the like. */
	onInbound?: (frame: Frame<"inbound">) => void;
	onControl?: (frame: Frame<"control">) => void;
	onNotice?: (frame: Frame<"notice">) => void;
	/** Reports dropped because they could not be encoded, and the last reason. */
	dropped = 0;
	lastDropped = "";
	/** Reports not yet taken by a sidecar, oldest first, and the chain that hands them over one at a time. */
	private kept: ClientFrame[] = [];
	private draining: Promise<void> = Promise.resolve();
	private nextId = 0;
	/** When a sidecar may be started next, and the pause after that; reset once one listens. */
	private nextSpawnAt = 0;
	private spawnPause = this.settings.deadlines.respawn_min_ms;
	/** Drains of the kept reports queued or running. */
	private drains = 0;
	/** When the sidecar last said anything on this connection. */
	private heardAt = 0;

	/** Tells the sidecar this process serves `session`, so its thread's replies come here. */
	attach(session: SessionRef): Promise<ServerFrame> {
		this.attached.set(session.id, session);
		return this.request({ type: "attach", session }, this.settings.deadlines.attach_ms);
	}

	/** Hands notify `frames` over after those kept earlier, in order, each done once journaled; what no sidecar took stays kept. */
	sendInOrder(frames: ClientFrame[], deadlineMs = this.settings.deadlines.notify_ms): Promise<void> {
		this.kept.push(...frames);
		this.kept.splice(0, Math.max(0, this.kept.length - this.settings.max_kept));
		this.drains += 1;
		this.draining = this.draining.then(async () => {
			while (this.kept.length > 0) {
				try {
					if (wasm.neverTaken(await this.request(this.kept[0], deadlineMs, true))) return;
				} catch (err) {
					// A frame that cannot be encoded would block the rest: dropped, counted for `/discord status`.
					this.lastDropped = describe(err);
					this.dropped += 1;
				}
				this.kept.shift();
			}
		}).finally(() => (this.drains -= 1));
		return this.draining;
	}

	/** Hands over what is kept when nothing else is on its way (the timer calls this: a sidecar may be back). */
	retryKept(): void {
		if (this.kept.length > 0 && this.drains === 0) void this.sendInOrder([]);
	}

	/** Writes what is kept to `<state>/spool/<time>-<pid>.jsonl` (0600) for the next sidecar; synchronous, for process `exit`. */
	spool(): void {
		const dir = this.settings.spool_dir;
		if (this.kept.length === 0 || !dir) return;
		try {
			mkdirSync(dir, { recursive: true, mode: 0o700 });
			const file = join(dir, `${Date.now()}-${process.pid}.jsonl`);
			writeFileSync(`${file}.tmp`, wasm.spoolText(this.kept, process.pid), { mode: 0o600 });
			renameSync(`${file}.tmp`, file); // A sidecar importing meanwhile never sees half a file.
			this.kept = [];
		} catch {}
	}

	/**
	 * Hands over this machine's spool when the sidecar cannot import it (it runs on another machine, or reads another
	 * state directory). A file is claimed by renaming it, as the sidecar does, so exactly one of them takes it.
	 */
	private replaySpool(): void {
		const dir = this.settings.spool_dir;
		const { host, spool } = this.welcome ?? {}; // An older sidecar does not say: its spool is left alone.
		if (!dir || !spool || (host === this.settings.host && spool === dir)) return;
		const frames: ClientFrame[] = [];
		for (const name of tryOr(() => readdirSync(dir), []).filter((name) => name.endsWith(".jsonl")).sort()) {
			const claimed = join(dir, `${name}.replaying-${process.pid}`);
			try {
				renameSync(join(dir, name), claimed);
				frames.push(...wasm.spooledFrames(readFileSync(claimed, "utf8")));
				unlinkSync(claimed);
			} catch {} // Taken by another; or unreadable: left claimed, for a person to find.
		}
		if (frames.length > 0) void this.sendInOrder(frames, this.settings.deadlines.replay_ms);
	}

	/**
	 * Sends a frame and waits for its answer (a failure is an error frame); with `untilAccepted`, only until it is
	 * journaled. A notify no sidecar took is sent again until the deadline: its idempotency key makes that safe.
	 */
	async request(frame: Request, deadlineMs: number, untilAccepted = false): Promise<ServerFrame> {
		const deadline = Date.now() + deadlineMs;
		for (;;) {
			const answer = await this.attempt(frame, deadline, untilAccepted);
			// Another try only with time for a whole connect: a cut-short one would replace this answer's reason.
			const pause = this.settings.deadlines.approval_retry_ms;
			const room = pause + this.settings.deadlines.connect_ms;
			if (frame.type !== "notify" || !wasm.neverTaken(answer) || Date.now() + room >= deadline) return answer;
			await Bun.sleep(pause);
		}
	}

	private async attempt(frame: Request, deadline: number, untilAccepted: boolean): Promise<ServerFrame> {
		if (this.waiting.size >= this.settings.max_pending) return wasm.clientError({ kind: "queue_full" });
		const id = `${process.pid}-${++this.nextId}`;
		let socket: Socket;
		try {
			socket = await withDeadline(this.connection(), deadline, true);
		} catch (err) {
			return failed(err, true);
		}
		const waiter: Waiter = { resolve: () => {}, accepted: false, untilAccepted };
		const answer = new Promise<ServerFrame>((resolve) => this.waiting.set(id, Object.assign(waiter, { resolve })));
		const sentAt = Date.now();
		try {
			socket.write(wasm.encodeClientFrame({ ...frame, id } as ClientFrame));
			return await withDeadline(answer, deadline, false);
		} catch (err) {
			// Journaled, but Discord has not confirmed it yet: it will still be delivered.
			if (waiter.accepted) return { type: "accepted", id, seq: 0 };
			// Not a word since: the sidecar is stopped or hung. The next request connects anew (and replaces it).
			if (this.heardAt < sentAt && this.socket === socket) this.fail();
			return failed(err, false);
		} finally {
			this.waiting.delete(id);
		}
	}

	private connection(): Promise<Socket> {
		if (this.socket && !this.socket.destroyed) return Promise.resolve(this.socket);
		return (this.connecting ??= this.open().finally(() => (this.connecting = undefined)));
	}

	private async open(): Promise<Socket> {
		const path = this.settings.socket_path;
		if (!path) throw new Failure({ kind: "no_socket_path" });
		const started = Date.now();
		for (let delay = 25; ; delay = Math.min(delay * 2, 400)) {
			try {
				const socket = await this.handshake(path);
				socket.unref(); // An idle connection must not keep OMP alive after its run (print mode).
				this.socket = socket;
				// A new sidecar (or a restarted one) learns again which sessions live here.
				for (const session of this.attached.values()) {
					socket.write(wasm.encodeClientFrame({ type: "attach", id: `${process.pid}-${++this.nextId}`, session } as ClientFrame));
				}
				queueMicrotask(() => this.replaySpool());
				return socket;
			} catch (err) {
				if (err instanceof Failure) throw err;
				this.maybeSpawn();
				if (Date.now() - started > this.settings.deadlines.connect_ms) throw new Failure({ kind: "no_sidecar", path, cause: describe(err) });
				await Bun.sleep(delay);
			}
		}
	}

	private handshake(path: string): Promise<Socket> {
		return new Promise((resolve, reject) => {
			const socket = connect(path);
			let welcomed = false;
			// A sidecar that accepts but never answers (stopped, hung) is no sidecar.
			const silent = setTimeout(() => {
				reject(new Error(`the sidecar at ${path} did not answer within ${this.settings.deadlines.handshake_ms} ms (stopped or hung?)`));
				socket.destroy();
			}, this.settings.deadlines.handshake_ms);
			socket.once("error", (err) => (welcomed ? this.fail() : reject(err)));
			socket.on("close", () => {
				clearTimeout(silent);
				if (this.socket === socket) this.fail();
				else reject(new Error("the sidecar closed the connection"));
			});
			socket.once("connect", () => {
				// A sidecar listens: the starts that brought it worked, so the next one needs no pause.
				this.spawnPause = this.settings.deadlines.respawn_min_ms;
				this.nextSpawnAt = 0;
				const { protocol, client, host } = this.settings;
				socket.write(wasm.encodeClientFrame({ type: "hello", protocol, client, pid: process.pid, host }));
			});
			// readline passes the socket's errors on to itself: they are handled above.
			createInterface({ input: socket }).on("error", () => {}).on("line", (line) => {
				const frame = tryOr<ServerFrame | undefined>(() => wasm.decodeServerFrame(line), undefined);
				if (!frame) return;
				this.heardAt = Date.now();
				if (!welcomed) {
					clearTimeout(silent);
					if (frame.type === "welcome") {
						welcomed = true;
						this.welcome = frame;
						resolve(socket);
					} else if (frame.type === "error") {
						reject(new Failure({ kind: "failed", connecting: true, cause: frame.message }));
						socket.destroy();
					}
				} else if (frame.type === "inbound") {
					this.onInbound?.(frame);
				} else if (frame.type === "control") {
					this.onControl?.(frame);
				} else if (frame.type === "notice") {
					this.onNotice?.(frame);
				} else if (frame.type === "accepted") {
					// Journaled: the final answer (delivered or error) follows.
					const waiter = this.waiting.get(frame.id);
					if (waiter) waiter.accepted = true;
					if (waiter?.untilAccepted) waiter.resolve(frame);
				} else if ("id" in frame && frame.id) {
					this.waiting.get(frame.id)?.resolve(frame);
				}
			});
		});
	}

	private fail(): void {
		this.socket?.destroy();
		this.socket = undefined;
		for (const waiter of this.waiting.values()) waiter.resolve(wasm.clientError({ kind: "connection_lost" }));
		this.waiting.clear();
	}

	/** Starts a sidecar unless one was started moments ago: the pause doubles, with jitter, up to its cap. */
	private maybeSpawn(): void {
		const now = Date.now();
		if (now < this.nextSpawnAt) return;
		const { respawn_max_ms } = this.settings.deadlines;
		this.nextSpawnAt = now + this.spawnPause * (0.5 + Math.random());
		this.spawnPause = Math.min(this.spawnPause * 2, respawn_max_ms);
		this.spawnSidecar();
	}

	private spawnSidecar(): void {
		// A machine that reaches another machine's sidecar (a forwarded socket) must not start its own.
		if (!this.settings.spawn_sidecar) return;
		// OMP_DISCORD_BIN, else this checkout's release build, else the platform package's (an optional dependency), else PATH.
		const built = join(dirname(import.meta.dir), "target", "release", "omp-discord");
		const manifest = `omp-discord-${process.platform}-${process.arch}/package.json`;
		const packaged = tryOr(() => join(dirname(createRequire(`${import.meta.dir}/`).resolve(manifest)), "bin", "omp-discord"), "");
		const binary = this.settings.sidecar_bin ?? [built, packaged].find((path) => path && existsSync(path)) ?? "omp-discord";
		try {
			// Detached: the sidecar serves every OMP process of this user and must not die with this one (or its terminal).
			const child = spawn(binary, this.settings.sidecar_args, { detached: true, stdio: "ignore", env: process.env });
			child.on("error", () => {});
			child.unref();
		} catch {} // Reported through the connect failure that follows.
	}
}

export const describe = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export function tryOr<T>(read: () => T, fallback: T): T {
	try {
		return read();
	} catch {
		return fallback;
	}
}

function failed(err: unknown, connecting: boolean): Frame<"error"> {
	return wasm.clientError(err instanceof Failure ? err.failure : { kind: "failed", connecting, cause: describe(err) });
}

async function withDeadline<T>(promise: Promise<T>, deadline: number, connecting: boolean): Promise<T> {
	let timer: ReturnType<typeof setTimeout> | undefined;
	const timeout = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new Failure({ kind: "timed_out", connecting })), Math.max(0, deadline - Date.now()));
	});
	return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const KEY = Symbol.for("omp-discord.sidecar");
/** The per-process sidecar client (with the process's report timer). */
export function sidecar(): SidecarClient {
	const global = globalThis as unknown as Record<symbol, SidecarClient | undefined>;
	if (!global[KEY]) {
		const client = new SidecarClient();
		global[KEY] = client;
		// Whatever is still kept when the process ends waits in the spool for the next sidecar.
		process.on("exit", () => client.spool());
		// Due run-card edits and coalesced bursts of every session, once a second.
		// Reports kept while no sidecar answered are tried again too: one may be back, or need starting again.
		setInterval(() => {
			const frames = tryOr(() => wasm.shim().tick(Date.now()), []);
			if (frames.length > 0) void client.sendInOrder(frames);
			else client.retryKept();
		}, wasm.settings().deadlines.tick_ms).unref();
	}
	return global[KEY];
}
