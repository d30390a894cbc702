//! `omp-discord serve`: the one process per user that owns Discord. OMP
//! extension shims (and the CLI) connect over a Unix socket and speak the
//! NDJSON protocol of `omp_discord_core::protocol`.
//!
//! # Layout
//!
//! - `socket`: binding the private socket, the single-instance lock, peer checks.
//! - `discord`: twilight-http with deadlines, retry caps and readable errors.
//! - this module: connections, the handshake, and carrying out requests.

pub mod discord;
pub mod socket;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use omp_discord_core::embed::{redact_payload, validate_message};
use omp_discord_core::protocol::{
    ClientFrame, ErrorCode, MAX_FRAME_BYTES, NotifyRequest, PROTOCOL_VERSION, ServerFrame,
    decode_client_frame, encode_frame,
};
use tokio::net::UnixStream;
use tokio::sync::{Mutex, mpsc};
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::Config;
use discord::{Discord, SendError};

/// Shared state of a running sidecar.
#[derive(Debug)]
pub struct Sidecar {
    config: Config,
    discord: Option<Discord>,
    started: Instant,
    clients: AtomicUsize,
    in_flight: AtomicUsize,
    delivered: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Cancelled when the sidecar should stop.
    pub shutdown: CancellationToken,
}

impl Sidecar {
    /// Creates the state for `config`.
    pub fn new(config: Config) -> Arc<Self> {
        let discord = config
            .token
            .as_ref()
            .map(|token| Discord::new(token, &config.api));
        Arc::new(Self {
            config,
            discord,
            started: Instant::now(),
            clients: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            shutdown: CancellationToken::new(),
        })
    }

    fn is_idle(&self) -> bool {
        self.clients.load(Ordering::SeqCst) == 0 && self.in_flight.load(Ordering::SeqCst) == 0
    }

    async fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("OMP_DISCORD_COMMIT"),
            "protocol": PROTOCOL_VERSION,
            "pid": std::process::id(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "socket": self.config.socket.display().to_string(),
            "token_configured": self.config.token.is_some(),
            "home_channel_id": self.config.home_channel.map(|id| id.to_string()),
            "clients": self.clients.load(Ordering::SeqCst),
            "in_flight": self.in_flight.load(Ordering::SeqCst),
            "delivered": self.delivered.load(Ordering::SeqCst),
            "failed": self.failed.load(Ordering::SeqCst),
            "last_error": self.last_error.lock().await.clone(),
        })
    }

    async fn notify(&self, request: NotifyRequest) -> ServerFrame {
        let id = request.id.clone();
        let error = |code, message: String| ServerFrame::Error {
            id: Some(id.clone()),
            code,
            message,
        };
        let (Some(discord), Some(channel)) = (&self.discord, self.config.home_channel) else {
            return error(
                ErrorCode::NotConfigured,
                "omp-discord serve has no Discord bot token or home channel: set OMP_DISCORD_TOKEN and \
                 OMP_DISCORD_CHANNEL_ID, then restart it (`omp-discord stop`)"
                    .to_owned(),
            );
        };
        let mut payload = request.message;
        // The shim redacted already; redact again so no client can bypass it.
        redact_payload(&mut payload);
        if let Err(err) = validate_message(&payload) {
            return error(ErrorCode::InvalidMessage, err.to_string());
        }
        let nonce = fresh_nonce(&request.session.id, &id);
        match discord.create_message(channel, &payload, nonce).await {
            Ok(message_id) => {
                self.delivered.fetch_add(1, Ordering::SeqCst);
                tracing::debug!(channel_id = %channel, message_id = %message_id, "message delivered");
                ServerFrame::Delivered {
                    id,
                    channel_id: channel.to_string(),
                    message_id: message_id.to_string(),
                }
            }
            Err(err) => {
                self.failed.fetch_add(1, Ordering::SeqCst);
                let code = match err {
                    SendError::Rejected { .. } => ErrorCode::DiscordRejected,
                    SendError::Unauthorized | SendError::Unavailable { .. } => {
                        ErrorCode::DiscordUnavailable
                    }
                };
                let message = err.to_string();
                tracing::warn!(channel_id = %channel, %code, error = %message, "message not delivered");
                *self.last_error.lock().await = Some(message.clone());
                error(code, message)
            }
        }
    }
}

/// A random nonce for one request; `Discord::create_message` reuses it for
/// that request's retries. (A u64 has at most 20 digits; Discord allows 25.)
fn fresh_nonce(session: &str, request: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(session.as_bytes());
    hasher.write(request.as_bytes());
    hasher.finish()
}

/// Serves `listener` until `sidecar.shutdown` is cancelled, then waits (up to
/// `drain`) for requests in flight.
pub async fn run(listener: tokio::net::UnixListener, sidecar: Arc<Sidecar>, drain: Duration) {
    let tasks = TaskTracker::new();
    loop {
        tokio::select! {
            () = sidecar.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let sidecar = sidecar.clone();
                    let span = tracing::debug_span!("connection");
                    tasks.spawn(handle_connection(stream, sidecar, tasks.clone()).instrument(span));
                }
                Err(err) => tracing::warn!(error = %err, "failed to accept a connection"),
            },
        }
    }
    tasks.close();
    if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
        tracing::warn!(
            in_flight = sidecar.in_flight.load(Ordering::SeqCst),
            "shutdown deadline passed with requests in flight"
        );
    }
}

/// Cancels `sidecar.shutdown` once nobody has been connected for `idle`.
pub async fn exit_when_idle(sidecar: Arc<Sidecar>, idle: Duration) {
    let mut idle_since = Instant::now();
    loop {
        tokio::select! {
            () = sidecar.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if !sidecar.is_idle() {
            idle_since = Instant::now();
        } else if idle_since.elapsed() >= idle {
            tracing::info!(idle_secs = idle.as_secs(), "no clients; exiting");
            sidecar.shutdown.cancel();
            return;
        }
    }
}

async fn handle_connection(stream: UnixStream, sidecar: Arc<Sidecar>, tasks: TaskTracker) {
    match socket::peer_is_same_user(&stream) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            tracing::warn!("refused a connection from another user");
            return;
        }
    }
    sidecar.clients.fetch_add(1, Ordering::SeqCst);
    let (read, mut write) = stream.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_FRAME_BYTES));
    let (tx, mut rx) = mpsc::channel::<ServerFrame>(64);
    // One writer per connection, so answers from concurrent requests never interleave.
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(frame) = rx.recv().await {
            if write
                .write_all(encode_frame(&frame).as_bytes())
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut greeted = false;
    loop {
        let line = tokio::select! {
            () = sidecar.shutdown.cancelled() => break,
            line = lines.next() => line,
        };
        let frame = match line {
            None => break,
            Some(Ok(line)) => decode_client_frame(line.as_bytes()),
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                let message = format!("a frame exceeded {MAX_FRAME_BYTES} bytes and was dropped");
                let _ = tx
                    .send(ServerFrame::Error {
                        id: None,
                        code: ErrorCode::FrameTooLarge,
                        message,
                    })
                    .await;
                continue;
            }
            Some(Err(LinesCodecError::Io(err))) => {
                tracing::debug!(error = %err, "connection read failed");
                break;
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => {
                let reply = ServerFrame::Error {
                    id: err.request_id().map(str::to_owned),
                    code: err.code(),
                    message: err.to_string(),
                };
                let _ = tx.send(reply).await;
                continue;
            }
        };
        if !greeted {
            match frame {
                ClientFrame::Hello(hello) if hello.protocol == PROTOCOL_VERSION => {
                    greeted = true;
                    tracing::debug!(client = %hello.client, pid = hello.pid, host = %hello.host, "client connected");
                    let welcome = ServerFrame::Welcome {
                        protocol: PROTOCOL_VERSION,
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                    };
                    let _ = tx.send(welcome).await;
                }
                ClientFrame::Hello(hello) => {
                    let message = format!(
                        "this sidecar speaks protocol {PROTOCOL_VERSION} but the client ({}) speaks {}; \
                         rebuild the plugin and the sidecar from the same checkout, then run `omp-discord stop`",
                        hello.client, hello.protocol
                    );
                    let _ = tx
                        .send(ServerFrame::Error {
                            id: None,
                            code: ErrorCode::ProtocolMismatch,
                            message,
                        })
                        .await;
                    break;
                }
                _ => {
                    let message = "the first frame must be {\"type\":\"hello\",...}".to_owned();
                    let _ = tx
                        .send(ServerFrame::Error {
                            id: None,
                            code: ErrorCode::HandshakeRequired,
                            message,
                        })
                        .await;
                    break;
                }
            }
            continue;
        }
        let sidecar = sidecar.clone();
        let tx = tx.clone();
        sidecar.in_flight.fetch_add(1, Ordering::SeqCst);
        tasks.spawn(async move {
            let reply = match frame {
                ClientFrame::Hello(_) => ServerFrame::Error {
                    id: None,
                    code: ErrorCode::MalformedFrame,
                    message: "hello was already sent on this connection".to_owned(),
                },
                ClientFrame::Notify(request) => sidecar.notify(request).await,
                ClientFrame::Status { id } => ServerFrame::Status {
                    id,
                    status: sidecar.status().await,
                },
                ClientFrame::Shutdown { id } => {
                    tracing::info!("shutdown requested over the socket");
                    sidecar.shutdown.cancel();
                    ServerFrame::ShuttingDown { id }
                }
            };
            let _ = tx.send(reply).await;
            sidecar.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    drop(tx);
    let _ = writer.await;
    sidecar.clients.fetch_sub(1, Ordering::SeqCst);
}
