//! The gateway with a raw WebSocket client: HELLO, IDENTIFY, READY, heartbeats, RESUME,
//! close codes, intents and zlib-stream.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use omp_discord_emulator::*;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Every wait in these tests ends by this deadline instead of hanging.
const DEADLINE: Duration = Duration::from_secs(10);

pub(crate) struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    zlib: Option<flate2::Decompress>,
    pub(crate) seq: u64,
}

/// What the server sent: a payload, or a close with its code.
#[derive(Debug)]
pub(crate) enum Received {
    Payload(Value),
    Closed(Option<u16>),
}

impl Client {
    pub(crate) async fn connect(emulator: &Emulator, query: &str) -> Client {
        let url = format!("{}/?v=10&encoding=json{query}", emulator.gateway_url());
        let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        let zlib = query.contains("zlib-stream").then(|| flate2::Decompress::new(true));
        Client { ws, zlib, seq: 0 }
    }

    pub(crate) async fn send(&mut self, payload: Value) {
        self.ws.send(Message::text(payload.to_string())).await.unwrap();
    }

    pub(crate) async fn recv(&mut self) -> Received {
        loop {
            let frame = tokio::time::timeout(DEADLINE, self.ws.next()).await.expect("gateway answered in time");
            let text = match frame {
                Some(Ok(Message::Text(text))) => text.to_string(),
                Some(Ok(Message::Binary(bytes))) => {
                    let z = self.zlib.as_mut().expect("binary frames only with zlib-stream");
                    let mut out = Vec::with_capacity(bytes.len() * 8 + 1024);
                    z.decompress_vec(&bytes, &mut out, flate2::FlushDecompress::Sync).unwrap();
                    String::from_utf8(out).unwrap()
                }
                Some(Ok(Message::Close(frame))) => return Received::Closed(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Received::Closed(None),
            };
            let payload: Value = serde_json::from_str(&text).unwrap();
            if let Some(seq) = payload["s"].as_u64() {
                self.seq = seq;
            }
            return Received::Payload(payload);
        }
    }

    pub(crate) async fn payload(&mut self) -> Value {
        match self.recv().await {
            Received::Payload(payload) => payload,
            Received::Closed(code) => panic!("closed with {code:?}"),
        }
    }

    /// The next dispatch named `name`, skipping others.
    pub(crate) async fn dispatch(&mut self, name: &str) -> Value {
        loop {
            let payload = self.payload().await;
            if payload["op"] == 0 && payload["t"] == name {
                return payload;
            }
        }
    }

    pub(crate) async fn close_code(&mut self) -> Option<u16> {
        loop {
            if let Received::Closed(code) = self.recv().await {
                return code;
            }
        }
    }

    pub(crate) async fn identify(&mut self, intents: u64) -> Value {
        let hello = self.payload().await;
        assert_eq!(hello["op"], 10);
        self.send(json!({"op": 2, "d": {
            "token": DEFAULT_BOT_TOKEN,
            "intents": intents,
            "properties": {"os": "linux", "browser": "test", "device": "test"},
        }}))
        .await;
        self.dispatch("READY").await
    }
}

const GUILDS: u64 = 1;
const GUILD_MESSAGES: u64 = 1 << 9;
const MESSAGE_CONTENT: u64 = 1 << 15;

pub(crate) fn fast_config() -> EmulatorConfig {
    EmulatorConfig { identify_interval: Duration::ZERO, ..EmulatorConfig::default() }
}

#[tokio::test]
async fn identify_gets_ready_then_guild_create_and_heartbeats_are_acked() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let mut client = Client::connect(&emulator, "").await;
    let ready = client.identify(GUILDS | GUILD_MESSAGES).await;
    let d = &ready["d"];
    assert_eq!(ready["s"], 1);
    assert_eq!(d["v"], 10);
    assert_eq!(d["user"]["id"], DEFAULT_BOT_USER_ID.to_string());
    for key in ["username", "discriminator", "mfa_enabled"] {
        assert!(d["user"].get(key).is_some(), "READY user lacks {key}");
    }
    assert_eq!(d["resume_gateway_url"], emulator.gateway_url());
    assert_eq!(d["guilds"], json!([{"id": DEFAULT_GUILD_ID.to_string(), "unavailable": true}]));
    assert_eq!(d["application"]["id"], DEFAULT_APPLICATION_ID.to_string());
    assert!(d["session_id"].as_str().unwrap().len() >= 16);
    let guild = client.dispatch("GUILD_CREATE").await;
    assert_eq!(guild["s"], 2);
    let channels = guild["d"]["channels"].as_array().unwrap();
    assert!(channels.iter().any(|c| c["id"].as_str() == Some(&*DEFAULT_HOME_CHANNEL_ID.to_string())));
    assert!(!guild["d"]["roles"].as_array().unwrap().is_empty());
    // Without GUILD_MEMBERS only the bot's own member is sent.
    assert_eq!(guild["d"]["members"].as_array().unwrap().len(), 1);
    client.send(json!({"op": 1, "d": 2})).await;
    assert_eq!(client.payload().await["op"], 11);
    assert_eq!(emulator.state().identify_count(), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn bad_token_and_disallowed_intents_close_the_connection() {
    let emulator = Emulator::start(EmulatorConfig { privileged_intents: 0, ..fast_config() }).await.unwrap();
    let mut client = Client::connect(&emulator, "").await;
    client.payload().await;
    client.send(json!({"op": 2, "d": {"token": "wrong", "intents": 1, "properties": {}}})).await;
    assert_eq!(client.close_code().await, Some(4004));
    let mut client = Client::connect(&emulator, "").await;
    client.payload().await;
    client
        .send(json!({"op": 2, "d": {"token": DEFAULT_BOT_TOKEN, "intents": MESSAGE_CONTENT, "properties": {}}}))
        .await;
    assert_eq!(client.close_code().await, Some(4014));
    let mut client = Client::connect(&emulator, "").await;
    client.payload().await;
    client.send(json!({"op": 99, "d": null})).await;
    assert_eq!(client.close_code().await, Some(4001));
    let mut client = Client::connect(&emulator, "").await;
    client.payload().await;
    client.send(json!({"op": 2, "d": {"token": DEFAULT_BOT_TOKEN, "intents": 1u64 << 40, "properties": {}}})).await;
    assert_eq!(client.close_code().await, Some(4013));
    emulator.shutdown().await;
}

#[tokio::test]
async fn message_content_requires_the_intent_or_a_mention() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let mut without = Client::connect(&emulator, "").await;
    without.identify(GUILDS | GUILD_MESSAGES).await;
    let mut with = Client::connect(&emulator, "").await;
    with.identify(GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT).await;
    let state = emulator.state();
    state.inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": "secret plan"})).unwrap();
    let hidden = without.dispatch("MESSAGE_CREATE").await;
    assert_eq!(hidden["d"]["content"], "");
    assert_eq!(hidden["d"]["author"]["id"], DEFAULT_OWNER_USER_ID.to_string());
    assert_eq!(with.dispatch("MESSAGE_CREATE").await["d"]["content"], "secret plan");
    let mention = format!("<@{DEFAULT_BOT_USER_ID}> hi");
    state.inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({ "content": mention })).unwrap();
    assert_eq!(without.dispatch("MESSAGE_CREATE").await["d"]["content"], mention);
    emulator.shutdown().await;
}

#[tokio::test]
async fn missing_heartbeats_time_out_with_4009() {
    let config = EmulatorConfig { heartbeat_interval: Duration::from_millis(100), ..fast_config() };
    let emulator = Emulator::start(config).await.unwrap();
    let mut client = Client::connect(&emulator, "").await;
    client.identify(GUILDS).await;
    assert_eq!(client.close_code().await, Some(4009));
    emulator.shutdown().await;
}

#[tokio::test]
async fn resume_replays_missed_dispatches_then_resumed() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let mut client = Client::connect(&emulator, "").await;
    let ready = client.identify(GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT).await;
    let session_id = ready["d"]["session_id"].as_str().unwrap().to_owned();
    client.dispatch("GUILD_CREATE").await;
    let seq = client.seq;
    drop(client);
    // Wait until the emulator noticed the drop, then make events while disconnected.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while emulator.state().snapshot()["gateway"]["connected"] != 0 {
        assert!(tokio::time::Instant::now() < deadline, "the drop was never noticed");
        tokio::task::yield_now().await;
    }
    let state = emulator.state();
    state.inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": "one"})).unwrap();
    state.inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": "two"})).unwrap();
    let mut resumed = Client::connect(&emulator, "").await;
    resumed.payload().await;
    resumed.send(json!({"op": 6, "d": {"token": DEFAULT_BOT_TOKEN, "session_id": session_id, "seq": seq}})).await;
    let one = resumed.payload().await;
    assert_eq!((one["t"].as_str(), one["s"].as_u64()), (Some("MESSAGE_CREATE"), Some(seq + 1)));
    assert_eq!(one["d"]["content"], "one");
    let two = resumed.payload().await;
    assert_eq!(two["d"]["content"], "two");
    assert_eq!(resumed.payload().await["t"], "RESUMED");
    assert_eq!(emulator.state().identify_count(), 1, "a resume is not an identify");
    // A seq from the future is 4007; an unknown session is op 9 (not resumable).
    let mut bad = Client::connect(&emulator, "").await;
    bad.payload().await;
    bad.send(json!({"op": 6, "d": {"token": DEFAULT_BOT_TOKEN, "session_id": "nope", "seq": 1}})).await;
    assert_eq!(bad.payload().await, json!({"op": 9, "d": false, "s": null, "t": null}));
    emulator.shutdown().await;
}

#[tokio::test]
async fn resume_with_a_future_seq_is_4007_and_a_clean_close_ends_the_session() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let mut client = Client::connect(&emulator, "").await;
    let ready = client.identify(GUILDS).await;
    let session_id = ready["d"]["session_id"].as_str().unwrap().to_owned();
    drop(client);
    let mut again = Client::connect(&emulator, "").await;
    again.payload().await;
    again.send(json!({"op": 6, "d": {"token": DEFAULT_BOT_TOKEN, "session_id": session_id, "seq": 999}})).await;
    assert_eq!(again.close_code().await, Some(4007));
    // Closing with 1000 ends the session: it can no longer be resumed.
    let mut client = Client::connect(&emulator, "").await;
    let ready = client.identify(GUILDS).await;
    let session_id = ready["d"]["session_id"].as_str().unwrap().to_owned();
    let sessions_before = emulator.state().snapshot()["gateway"]["sessions"].as_u64().unwrap();
    let normal = tokio_tungstenite::tungstenite::protocol::CloseFrame {
        code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "".into(),
    };
    client.ws.close(Some(normal)).await.unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while emulator.state().snapshot()["gateway"]["sessions"].as_u64().unwrap() == sessions_before {
        assert!(tokio::time::Instant::now() < deadline, "the session was never ended");
        tokio::task::yield_now().await;
    }
    let mut again = Client::connect(&emulator, "").await;
    again.payload().await;
    again.send(json!({"op": 6, "d": {"token": DEFAULT_BOT_TOKEN, "session_id": session_id, "seq": 1}})).await;
    assert_eq!(again.payload().await["op"], 9);
    emulator.shutdown().await;
}

#[tokio::test]
async fn identify_spacing_and_counting() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let mut first = Client::connect(&emulator, "").await;
    first.identify(GUILDS).await;
    let mut second = Client::connect(&emulator, "").await;
    second.payload().await;
    second.send(json!({"op": 2, "d": {"token": DEFAULT_BOT_TOKEN, "intents": 1, "properties": {}}})).await;
    assert_eq!(second.payload().await, json!({"op": 9, "d": false, "s": null, "t": null}));
    assert_eq!(emulator.state().snapshot()["gateway"]["identify_count"], 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn zlib_stream_is_one_context_per_connection() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let mut client = Client::connect(&emulator, "&compress=zlib-stream").await;
    let ready = client.identify(GUILDS).await;
    assert_eq!(ready["t"], "READY");
    assert_eq!(client.dispatch("GUILD_CREATE").await["d"]["id"], DEFAULT_GUILD_ID.to_string());
    emulator.shutdown().await;
}

#[tokio::test]
async fn rest_actions_are_dispatched() {
    let emulator = Emulator::start(EmulatorConfig { rate_limits: false, ..fast_config() }).await.unwrap();
    let mut client = Client::connect(&emulator, "").await;
    client.identify(GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT).await;
    let http = reqwest_like(&emulator);
    let created = http.post(DEFAULT_HOME_CHANNEL_ID, json!({"content": "mine", "nonce": "77"})).await;
    let event = client.dispatch("MESSAGE_CREATE").await;
    assert_eq!(event["d"]["id"], created["id"]);
    assert_eq!(event["d"]["nonce"], "77");
    assert_eq!(event["d"]["guild_id"], DEFAULT_GUILD_ID.to_string());
    let id = created["id"].as_str().unwrap();
    http.request("PATCH", &format!("/channels/{DEFAULT_HOME_CHANNEL_ID}/messages/{id}"), json!({"content": "edited"}))
        .await;
    assert_eq!(client.dispatch("MESSAGE_UPDATE").await["d"]["content"], "edited");
    let thread = http
        .request("POST", &format!("/channels/{DEFAULT_HOME_CHANNEL_ID}/messages/{id}/threads"), json!({"name": "t"}))
        .await;
    let event = client.dispatch("THREAD_CREATE").await;
    assert_eq!(event["d"]["id"], thread["id"]);
    assert_eq!(event["d"]["newly_created"], true);
    http.request("DELETE", &format!("/channels/{DEFAULT_HOME_CHANNEL_ID}/messages/{id}"), Value::Null).await;
    assert_eq!(client.dispatch("MESSAGE_DELETE").await["d"]["id"], id);
    emulator.shutdown().await;
}

/// A minimal HTTP client over the emulator's router (no extra HTTP crate needed).
pub(crate) struct Http {
    state: EmulatorState,
}

pub(crate) fn reqwest_like(emulator: &Emulator) -> Http {
    Http { state: emulator.state().clone() }
}

impl Http {
    pub(crate) async fn post(&self, channel: u64, body: Value) -> Value {
        self.request("POST", &format!("/channels/{channel}/messages"), body).await
    }

    pub(crate) async fn request(&self, method: &str, path: &str, body: Value) -> Value {
        let body = (!body.is_null()).then_some(body);
        crate::support::call(&self.state, method, &format!("/api/v10{path}"), body).await.body
    }
}

#[tokio::test]
async fn no_events_from_channels_the_bot_cannot_see() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let mut client = Client::connect(&emulator, "").await;
    client.identify(GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT).await;
    let state = emulator.state();
    state.inject_message(DEFAULT_HIDDEN_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": "hidden"})).unwrap();
    state.inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": "visible"})).unwrap();
    // Dispatches keep their order, so the first MESSAGE_CREATE tells whether the hidden one leaked.
    assert_eq!(client.dispatch("MESSAGE_CREATE").await["d"]["content"], "visible");
    emulator.shutdown().await;
}

#[tokio::test]
async fn protocol_errors_close_with_discords_codes() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    // Presence update before IDENTIFY: not authenticated.
    let mut client = Client::connect(&emulator, "").await;
    client.payload().await;
    client.send(json!({"op": 3, "d": {"since": null, "activities": [], "status": "online", "afk": false}})).await;
    assert_eq!(client.close_code().await, Some(4003));
    // A shard id outside the shard count.
    let mut client = Client::connect(&emulator, "").await;
    client.payload().await;
    client
        .send(json!({"op": 2, "d": {"token": DEFAULT_BOT_TOKEN, "intents": 1, "shard": [1, 1], "properties": {}}}))
        .await;
    assert_eq!(client.close_code().await, Some(4010));
    // A second IDENTIFY on one connection.
    let mut client = Client::connect(&emulator, "").await;
    client.identify(GUILDS).await;
    client.send(json!({"op": 2, "d": {"token": DEFAULT_BOT_TOKEN, "intents": 1, "properties": {}}})).await;
    assert_eq!(client.close_code().await, Some(4005));
    // More than 120 client events in a minute.
    let mut client = Client::connect(&emulator, "").await;
    client.identify(GUILDS).await;
    for _ in 0..121 {
        client.send(json!({"op": 1, "d": null})).await;
    }
    assert_eq!(client.close_code().await, Some(4008));
    emulator.shutdown().await;
}

#[tokio::test]
async fn request_guild_members_answers_with_one_chunk() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let mut client = Client::connect(&emulator, "").await;
    client.identify(GUILDS | (1 << 1)).await;
    client
        .send(json!({"op": 8, "d": {"guild_id": DEFAULT_GUILD_ID.to_string(), "query": "", "limit": 0, "nonce": "n1"}}))
        .await;
    let chunk = client.dispatch("GUILD_MEMBERS_CHUNK").await;
    assert_eq!(chunk["d"]["nonce"], "n1");
    assert_eq!(chunk["d"]["members"].as_array().unwrap().len(), 3);
    emulator.shutdown().await;
}
