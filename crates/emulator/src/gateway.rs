//! Gateway v10 over WebSocket: HELLO, IDENTIFY → READY + GUILD_CREATE, heartbeats with a
//! timeout, RESUME with replay by sequence, INVALID_SESSION, RECONNECT, close codes,
//! intents, IDENTIFY spacing, and `compress=zlib-stream`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use flate2::{Compress, Compression, FlushCompress};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until};
use tracing::{debug, info};

use crate::fault::GatewayFault;
use crate::model::Directory;
use crate::state::{EmulatorState, Session, World, intents, lock};

/// Events a client may send per minute before it is closed with 4008.
const CLIENT_EVENTS_PER_MINUTE: usize = 120;
/// IDENTIFYs per day before Discord resets the token.
const IDENTIFY_DAILY_LIMIT: u64 = 1000;

/// How a connection's frames are encoded.
pub(crate) enum Encoder {
    Text,
    /// One zlib context for the whole connection, sync-flushed after every message.
    Zlib(Box<Compress>),
    /// One zstd stream for the whole connection, flushed after every message.
    Zstd(Box<zstd_safe::CCtx<'static>>),
}

impl Encoder {
    pub(crate) fn new(compress: Option<&str>) -> Self {
        match compress {
            Some("zlib-stream") => Self::Zlib(Box::new(Compress::new(Compression::fast(), true))),
            Some("zstd-stream") => Self::Zstd(Box::new(zstd_safe::CCtx::create())),
            _ => Self::Text,
        }
    }

    pub(crate) fn encode(&mut self, text: &str) -> WsMessage {
        match self {
            Self::Text => WsMessage::Text(text.into()),
            Self::Zlib(z) => {
                let input = text.as_bytes();
                let start = z.total_in();
                let mut out = Vec::with_capacity(input.len() / 2 + 64);
                loop {
                    let consumed = usize::try_from(z.total_in() - start).expect("fits in memory");
                    out.reserve(input.len() + 64);
                    z.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                        .expect("in-memory deflate does not fail");
                    let done = usize::try_from(z.total_in() - start).expect("fits in memory") == input.len();
                    if done && out.ends_with(&[0, 0, 0xff, 0xff]) && out.len() < out.capacity() {
                        break;
                    }
                }
                WsMessage::Binary(out.into())
            }
            Self::Zstd(ctx) => {
                let input = text.as_bytes();
                let mut source = zstd_safe::InBuffer::around(input);
                let mut out: Vec<u8> = Vec::with_capacity(input.len() / 2 + 128);
                loop {
                    let pos = out.len();
                    out.reserve(input.len().max(1024));
                    let mut sink = zstd_safe::OutBuffer::around_pos(&mut out, pos);
                    let left = ctx
                        .compress_stream2(&mut sink, &mut source, zstd_safe::zstd_sys::ZSTD_EndDirective::ZSTD_e_flush)
                        .expect("in-memory zstd compression does not fail");
                    if left == 0 && source.pos() == input.len() {
                        break;
                    }
                }
                WsMessage::Binary(out.into())
            }
        }
    }
}

/// Why a connection ends.
enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// Drop the TCP connection without a close frame.
    Drop,
    /// The client closed (or the socket failed).
    Gone(Option<u16>),
}

struct Connection {
    state: EmulatorState,
    id: u64,
    encoder: Encoder,
    host: String,
    session: Option<String>,
    notify: Arc<Notify>,
    /// Highest sequence number sent on this connection.
    cursor: u64,
    heartbeat_deadline: Instant,
    client_events: Vec<Instant>,
}

/// Runs one gateway connection until it closes.
pub(crate) async fn run(socket: WebSocket, state: EmulatorState, compress: Option<String>, host: String) {
    let (mut sink, mut stream) = socket.split();
    let interval = state.config().heartbeat_interval;
    let mut connection = Connection {
        state: state.clone(),
        id: fastrand::u64(..),
        encoder: Encoder::new(compress.as_deref()),
        host,
        session: None,
        notify: Arc::new(Notify::new()),
        cursor: 0,
        heartbeat_deadline: Instant::now() + interval.mul_f64(1.5),
        client_events: Vec::new(),
    };
    let mut faults = state.inner.gateway_faults.subscribe();
    let hello = json!({"op": 10, "s": null, "t": null, "d": {"heartbeat_interval": interval.as_millis()}});
    let mut end = match sink.send(connection.encoder.encode(&hello.to_string())).await {
        Ok(()) => None,
        Err(_) => Some(End::Gone(None)),
    };
    while end.is_none() {
        let notify = connection.notify.clone();
        let outgoing: Result<Vec<String>, End> = tokio::select! {
            frame = stream.next() => match frame {
                Some(Ok(WsMessage::Text(text))) => connection.handle(text.as_str()),
                Some(Ok(WsMessage::Binary(_))) => Err(End::Close(4002, "Decode error")),
                Some(Ok(WsMessage::Close(frame))) => Err(End::Gone(frame.map(|f| f.code))),
                Some(Ok(_)) => Ok(Vec::new()),
                Some(Err(_)) | None => Err(End::Gone(None)),
            },
            () = notify.notified() => Ok(connection.pending()),
            fault = faults.recv() => match fault {
                Ok(fault) => connection.fault(fault),
                Err(_) => Ok(Vec::new()),
            },
            () = sleep_until(connection.heartbeat_deadline) => {
                debug!(connection = connection.id, "heartbeat timeout");
                Err(End::Close(4009, "Session timed out"))
            }
        };
        match outgoing {
            Ok(frames) => {
                for frame in frames {
                    if sink.send(connection.encoder.encode(&frame)).await.is_err() {
                        end = Some(End::Gone(None));
                        break;
                    }
                }
            }
            Err(reason) => end = Some(reason),
        }
    }
    match end.expect("the loop ends with a reason") {
        End::Close(code, reason) => {
            info!(code, "gateway closing connection");
            let _ = sink.send(WsMessage::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
            connection.detach(code);
        }
        End::Drop => {
            info!("gateway dropping connection");
            connection.detach(4000);
        }
        End::Gone(code) => connection.detach(code.unwrap_or(1006)),
    }
}

impl Connection {
    fn stalled(&self) -> bool {
        lock(&self.state.inner.faults).gateway_stalled
    }

    /// Dispatches queued for this connection's session that it has not sent yet.
    fn pending(&mut self) -> Vec<String> {
        if self.stalled() {
            return Vec::new();
        }
        let Some(session_id) = &self.session else {
            return Vec::new();
        };
        let world = self.state.world();
        let Some(session) = world.sessions.get(session_id) else {
            return Vec::new();
        };
        if session.attached != Some(self.id) {
            return Vec::new();
        }
        let events = session.events_after(self.cursor);
        if let Some((seq, _)) = events.last() {
            self.cursor = *seq;
        }
        events.into_iter().map(|(_, frame)| frame.to_string()).collect()
    }

    fn fault(&mut self, fault: GatewayFault) -> Result<Vec<String>, End> {
        match fault {
            GatewayFault::Drop => Err(End::Drop),
            GatewayFault::Reconnect => Ok(vec![json!({"op": 7, "d": null, "s": null, "t": null}).to_string()]),
            GatewayFault::InvalidSession { resumable } => {
                if !resumable && let Some(session) = self.session.take() {
                    self.state.world().sessions.remove(&session);
                }
                Ok(vec![json!({"op": 9, "d": resumable, "s": null, "t": null}).to_string()])
            }
            GatewayFault::Close { code } => {
                // These codes end the session: the client must IDENTIFY again.
                if (code == 4004 || code == 4009 || (4010..=4014).contains(&code))
                    && let Some(session) = self.session.take()
                {
                    self.state.world().sessions.remove(&session);
                }
                Err(End::Close(code, "Closed by the emulator"))
            }
            GatewayFault::Wake => Ok(self.pending()),
        }
    }

    fn detach(&mut self, code: u16) {
        let Some(session_id) = self.session.take() else {
            return;
        };
        let mut world = self.state.world();
        // A client closing with 1000 or 1001 ends its session; anything else keeps it
        // resumable.
        if matches!(code, 1000 | 1001) {
            world.sessions.remove(&session_id);
        } else if let Some(session) = world.sessions.get_mut(&session_id)
            && session.attached == Some(self.id)
        {
            session.attached = None;
            session.detached_at = Some(Instant::now());
        }
        drop(world);
        self.state.touch();
    }

    fn valid_token(&self, token: &Value) -> bool {
        let token = token.as_str().unwrap_or("");
        let token = token.strip_prefix("Bot ").unwrap_or(token);
        !lock(&self.state.inner.faults).token_revoked && token == self.state.config().token
    }

    /// Handles one client frame; returns frames to send or how to end.
    fn handle(&mut self, text: &str) -> Result<Vec<String>, End> {
        let now = Instant::now();
        self.client_events.retain(|at| now.duration_since(*at) < Duration::from_secs(60));
        self.client_events.push(now);
        if self.client_events.len() > CLIENT_EVENTS_PER_MINUTE {
            return Err(End::Close(4008, "Rate limited."));
        }
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            return Err(End::Close(4002, "Error while decoding payload."));
        };
        let op = payload["op"].as_u64();
        match op {
            Some(1) => {
                if self.stalled() {
                    return Ok(Vec::new());
                }
                if let Some(session) = &self.session
                    && self.state.world().sessions.get(session).is_none_or(|s| s.attached != Some(self.id))
                {
                    // Another connection resumed this session.
                    return Err(End::Close(4000, "Session taken over"));
                }
                self.heartbeat_deadline = now + self.state.config().heartbeat_interval.mul_f64(1.5);
                Ok(vec![json!({"op": 11, "d": null, "s": null, "t": null}).to_string()])
            }
            Some(2) => self.identify(&payload["d"]),
            Some(6) => self.resume(&payload["d"]),
            Some(3 | 4) if self.session.is_some() => Ok(Vec::new()),
            Some(8) if self.session.is_some() => Ok(self.request_members(&payload["d"])),
            Some(3 | 4 | 8) => Err(End::Close(4003, "Not authenticated.")),
            _ => Err(End::Close(4001, "Unknown opcode.")),
        }
    }

    fn identify(&mut self, d: &Value) -> Result<Vec<String>, End> {
        if self.session.is_some() {
            return Err(End::Close(4005, "Already authenticated."));
        }
        if !self.valid_token(&d["token"]) {
            return Err(End::Close(4004, "Authentication failed."));
        }
        let Some(requested) = d["intents"].as_u64() else {
            return Err(End::Close(4013, "Invalid intent(s)."));
        };
        if requested & !intents::ALL != 0 {
            return Err(End::Close(4013, "Invalid intent(s)."));
        }
        if requested & intents::PRIVILEGED & !self.state.config().privileged_intents != 0 {
            return Err(End::Close(4014, "Disallowed intent(s)."));
        }
        let shard = match d["shard"].as_array() {
            Some(s) => [s.first().and_then(Value::as_u64).unwrap_or(0), s.get(1).and_then(Value::as_u64).unwrap_or(1)],
            None => [0, 1],
        };
        if shard[1] == 0 || shard[0] >= shard[1] {
            return Err(End::Close(4010, "Invalid shard."));
        }
        if shard[1] > 1 && (shard[1] as usize) > self.state.world().guilds.len().max(1) * 2500 {
            return Err(End::Close(4011, "Sharding required."));
        }
        let now = Instant::now();
        let mut world = self.state.world();
        // One IDENTIFY per identify_interval (max_concurrency 1): a faster one gets op 9.
        if world.last_identify.is_some_and(|last| now.duration_since(last) < self.state.config().identify_interval) {
            return Ok(vec![json!({"op": 9, "d": false, "s": null, "t": null}).to_string()]);
        }
        world.last_identify = Some(now);
        world.identify_count += 1;
        if world.identify_count > IDENTIFY_DAILY_LIMIT {
            // Discord resets the token of a bot that identifies too often.
            lock(&self.state.inner.faults).token_revoked = true;
            return Err(End::Close(4004, "Authentication failed."));
        }
        let session_id = format!("{:032x}", fastrand::u128(..));
        self.notify = Arc::new(Notify::new());
        world.sessions.insert(
            session_id.clone(),
            Session {
                intents: requested,
                shard,
                seq: 0,
                events: Default::default(),
                notify: self.notify.clone(),
                attached: Some(self.id),
                detached_at: None,
            },
        );
        let ready = ready_json(&world, &session_id, &self.host, shard, self.state.config().privileged_intents);
        push(&mut world, &session_id, "READY", ready);
        if requested & intents::GUILDS != 0 {
            // Only the guilds the bot has been invited to.
            let guilds: Vec<u64> = world
                .guilds
                .values()
                .filter(|g| g.members.contains_key(&world.bot_id) && (g.id >> 22) % shard[1] == shard[0])
                .map(|g| g.id)
                .collect();
            for guild in guilds {
                let data = guild_create_json(&world, guild, requested);
                push(&mut world, &session_id, "GUILD_CREATE", data);
            }
        }
        drop(world);
        info!(shard = shard[0], "gateway session identified");
        self.session = Some(session_id);
        self.cursor = 0;
        self.state.touch();
        Ok(self.pending())
    }

    fn resume(&mut self, d: &Value) -> Result<Vec<String>, End> {
        if self.session.is_some() {
            return Err(End::Close(4005, "Already authenticated."));
        }
        if !self.valid_token(&d["token"]) {
            return Err(End::Close(4004, "Authentication failed."));
        }
        let session_id = d["session_id"].as_str().unwrap_or("").to_owned();
        let seq = d["seq"].as_u64().unwrap_or(0);
        let mut world = self.state.world();
        let Some(session) = world.sessions.get_mut(&session_id) else {
            return Ok(vec![json!({"op": 9, "d": false, "s": null, "t": null}).to_string()]);
        };
        if seq > session.seq {
            return Err(End::Close(4007, "Invalid seq."));
        }
        if session.events.front().is_some_and(|(first, _)| *first > seq + 1) {
            // The missed events are no longer buffered: the session cannot be resumed.
            world.sessions.remove(&session_id);
            return Ok(vec![json!({"op": 9, "d": false, "s": null, "t": null}).to_string()]);
        }
        self.notify = Arc::new(Notify::new());
        session.notify = self.notify.clone();
        session.attached = Some(self.id);
        session.detached_at = None;
        push(&mut world, &session_id, "RESUMED", json!({"_trace": ["emulator"]}));
        drop(world);
        info!(seq, "gateway session resumed");
        self.session = Some(session_id);
        self.cursor = seq;
        self.state.touch();
        Ok(self.pending())
    }

    fn request_members(&mut self, d: &Value) -> Vec<String> {
        let mut world = self.state.world();
        let Some(guild_id) = d["guild_id"].as_str().and_then(|g| g.parse::<u64>().ok()) else {
            return Vec::new();
        };
        let Some(guild) = world.guilds.get(&guild_id) else {
            return Vec::new();
        };
        let members: Vec<Value> = guild
            .members
            .iter()
            .map(|(id, m)| {
                let mut json = m.to_json();
                json["user"] = world.user_json(*id);
                json
            })
            .collect();
        let mut chunk = json!({
            "guild_id": guild_id.to_string(),
            "members": members,
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        });
        if let Some(nonce) = d.get("nonce") {
            chunk["nonce"] = nonce.clone();
        }
        if let Some(session) = self.session.clone() {
            push(&mut world, &session, "GUILD_MEMBERS_CHUNK", chunk);
        }
        drop(world);
        self.pending()
    }
}

/// Queues a dispatch for one session only (READY, GUILD_CREATE, RESUMED, chunks).
fn push(world: &mut World, session_id: &str, name: &str, data: Value) {
    if let Some(session) = world.sessions.get_mut(session_id) {
        session.seq += 1;
        let frame = json!({"op": 0, "t": name, "s": session.seq, "d": data}).to_string();
        session.events.push_back((session.seq, frame.into()));
        session.notify.notify_one();
    }
}

fn ready_json(world: &World, session_id: &str, host: &str, shard: [u64; 2], privileged: u64) -> Value {
    // Application flags for the privileged intents the application has enabled.
    let mut flags = 0u64;
    if privileged & intents::MESSAGE_CONTENT != 0 {
        flags |= 1 << 18;
    }
    if privileged & intents::GUILD_MEMBERS != 0 {
        flags |= 1 << 14;
    }
    if privileged & (1 << 8) != 0 {
        flags |= 1 << 12;
    }
    json!({
        "v": 10,
        "user": world.bot_json(),
        "guilds": world
            .guilds
            .values()
            .filter(|g| g.members.contains_key(&world.bot_id) && (g.id >> 22) % shard[1] == shard[0])
            .map(|g| json!({"id": g.id.to_string(), "unavailable": true}))
            .collect::<Vec<_>>(),
        "session_id": session_id,
        "session_type": "normal",
        "resume_gateway_url": format!("ws://{host}"),
        "shard": shard,
        "application": {"id": world.application_id.to_string(), "flags": flags},
        "private_channels": [],
        "relationships": [],
        "presences": [],
        "guild_join_requests": [],
        "geo_ordered_rtc_regions": ["emulator"],
        "user_settings": {},
        "auth": {},
        "_trace": ["emulator"],
    })
}

pub(crate) fn guild_create_json(world: &World, guild_id: u64, requested: u64) -> Value {
    let guild = &world.guilds[&guild_id];
    let mut json = guild.to_json(world.bot_id);
    let members: Vec<Value> = guild
        .members
        .iter()
        .filter(|(id, _)| requested & intents::GUILD_MEMBERS != 0 || **id == world.bot_id)
        .map(|(id, m)| {
            let mut member = m.to_json();
            member["user"] = world.user_json(*id);
            member
        })
        .collect();
    let bot_sees = |id: u64| world.permissions(world.bot_id, id) & crate::config::permissions::VIEW_CHANNEL != 0;
    let channels: Vec<Value> = world
        .channels
        .values()
        .filter(|c| c.guild_id == Some(guild_id) && !c.is_thread())
        .map(|c| c.to_json())
        .collect();
    let threads: Vec<Value> = world
        .channels
        .values()
        .filter(|c| c.guild_id == Some(guild_id) && c.thread.as_ref().is_some_and(|t| !t.archived))
        .filter(|c| bot_sees(c.id))
        .map(|c| c.to_json())
        .collect();
    let object = json.as_object_mut().expect("guilds are objects");
    object.insert("joined_at".into(), json!(crate::snowflake::iso8601(crate::snowflake::unix_ms_of(guild_id))));
    object.insert("large".into(), json!(false));
    object.insert("unavailable".into(), json!(false));
    object.insert("member_count".into(), json!(guild.members.len()));
    object.insert("members".into(), json!(members));
    object.insert("channels".into(), json!(channels));
    object.insert("threads".into(), json!(threads));
    object.insert("presences".into(), json!([]));
    object.insert("voice_states".into(), json!([]));
    object.insert("stage_instances".into(), json!([]));
    object.insert("guild_scheduled_events".into(), json!([]));
    object.insert("soundboard_sounds".into(), json!([]));
    object.insert("embedded_activities".into(), json!([]));
    object.insert("lazy".into(), json!(true));
    json
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn zstd_stream_frames_decode_one_by_one_with_one_context() {
        let mut encoder = Encoder::new(Some("zstd-stream"));
        let mut decoder = zstd_safe::DCtx::create();
        for text in ["{\"op\":10}", &"y".repeat(200_000), "{\"op\":11}"] {
            let WsMessage::Binary(bytes) = encoder.encode(text) else {
                panic!("zstd frames are binary");
            };
            let mut source = zstd_safe::InBuffer::around(&bytes);
            let mut out: Vec<u8> = Vec::with_capacity(text.len() + 1024);
            while source.pos() < bytes.len() {
                let pos = out.len();
                out.reserve(64 * 1024);
                let mut sink = zstd_safe::OutBuffer::around_pos(&mut out, pos);
                decoder.decompress_stream(&mut sink, &mut source).unwrap();
            }
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
    }

    #[test]
    fn zlib_stream_frames_share_one_context_and_end_in_sync_marker() {
        let mut encoder = Encoder::new(Some("zlib-stream"));
        let mut stream = Vec::new();
        for text in ["{\"op\":10}", "{\"op\":11}", &"x".repeat(100_000)] {
            let WsMessage::Binary(bytes) = encoder.encode(text) else {
                panic!("zlib frames are binary");
            };
            assert!(bytes.ends_with(&[0, 0, 0xff, 0xff]));
            stream.extend_from_slice(&bytes);
        }
        let mut decoded = String::new();
        // Decoding the concatenation needs the single shared context.
        let _ = flate2::read::ZlibDecoder::new(&stream[..]).read_to_string(&mut decoded);
        assert!(decoded.starts_with("{\"op\":10}{\"op\":11}xxx"));
        assert_eq!(decoded.len(), 18 + 100_000);
    }
}
