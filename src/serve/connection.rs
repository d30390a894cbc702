//! A client's connection: the peer check, the handshake, reading frames in
//! order, one writer per connection, and handing each request to its feature.

use super::{Sidecar, socket};
use omp_discord_core::protocol::{
    ClientFrame, ErrorCode, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerFrame, decode_client_frame, encode_frame,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

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
            in_flight = sidecar.counters.in_flight.load(Ordering::SeqCst),
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

pub(super) async fn handle_connection(stream: UnixStream, sidecar: Arc<Sidecar>, tasks: TaskTracker) {
    match socket::peer_is_same_user(&stream) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let peer = stream.peer_cred().ok().map(|c| c.uid());
            tracing::warn!(peer_uid = ?peer, "refused a connection from another user");
            // Say why before closing, so the other user's client shows more than a dropped connection.
            let refusal = ServerFrame::Error {
                id: None,
                code: ErrorCode::Forbidden,
                message: format!(
                    "this omp-discord sidecar serves uid {} only; each user runs their own (the extension \
                     starts it), so set OMP_DISCORD_SOCKET to a socket of your own or unset it",
                    rustix::process::getuid().as_raw()
                ),
            };
            let mut stream = stream;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                use tokio::io::AsyncWriteExt;
                stream.write_all(encode_frame(&refusal).as_bytes()).await
            })
            .await;
            return;
        }
    }
    sidecar.counters.clients.fetch_add(1, Ordering::SeqCst);
    let (read, mut write) = stream.into_split();
    let mut lines = socket::FrameReader::new(read, MAX_FRAME_BYTES);
    let (tx, mut rx) = mpsc::channel::<ServerFrame>(64);
    // One writer per connection, so answers from concurrent requests never interleave.
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(frame) = rx.recv().await {
            if write.write_all(encode_frame(&frame).as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut greeted = false;
    let mut host = String::new();
    let mut pid = 0;
    loop {
        let line = tokio::select! {
            () = sidecar.shutdown.cancelled() => break,
            line = lines.next() => line,
        };
        let frame = match line {
            Ok(None) => break,
            Ok(Some(socket::Line::Frame(line))) => decode_client_frame(&line),
            Ok(Some(socket::Line::TooLong)) => {
                let message = format!("a frame exceeded {MAX_FRAME_BYTES} bytes and was dropped");
                let _ = tx.send(ServerFrame::Error { id: None, code: ErrorCode::FrameTooLarge, message }).await;
                continue;
            }
            Err(err) => {
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
                    host.clone_from(&hello.host);
                    pid = hello.pid;
                    // A shim that could not reach a sidecar earlier may have left reports behind.
                    sidecar.import_spool();
                    tracing::debug!(client = %hello.client, pid = hello.pid, host = %hello.host, "client connected");
                    let welcome = ServerFrame::Welcome {
                        protocol: PROTOCOL_VERSION,
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        report: sidecar.config.report.clone(),
                        approvals: serde_json::to_value(&sidecar.approvals.policy).unwrap_or_default(),
                        host: rustix::system::uname().nodename().to_string_lossy().into_owned(),
                        spool: sidecar
                            .config
                            .state_dir
                            .join(omp_discord_core::paths::SPOOL_DIR_NAME)
                            .display()
                            .to_string(),
                    };
                    let _ = tx.send(welcome).await;
                }
                ClientFrame::Hello(hello) => {
                    let message = format!(
                        "this sidecar speaks protocol {PROTOCOL_VERSION} but the client ({}) speaks {}; \
                         rebuild the plugin and the sidecar from the same checkout, then run `omp-discord stop`",
                        hello.client, hello.protocol
                    );
                    let _ = tx.send(ServerFrame::Error { id: None, code: ErrorCode::ProtocolMismatch, message }).await;
                    break;
                }
                _ => {
                    let message = "the first frame must be {\"type\":\"hello\",...}".to_owned();
                    let _ = tx.send(ServerFrame::Error { id: None, code: ErrorCode::HandshakeRequired, message }).await;
                    break;
                }
            }
            continue;
        }
        // Journaling happens here, in frame order; only the wait for Discord is spawned.
        let accepted = match frame {
            ClientFrame::Notify(request) => {
                let id = request.id.clone();
                match sidecar.accept(request, &host) {
                    Ok((seq, outcome)) => {
                        let _ = tx.send(ServerFrame::Accepted { id: id.clone(), seq }).await;
                        Some((id, outcome))
                    }
                    Err(reply) => {
                        if let ServerFrame::Error { code, message, .. } = &*reply {
                            tracing::debug!(request_id = %id, %code, %message, "message refused");
                        }
                        let _ = tx.send(*reply).await;
                        continue;
                    }
                }
            }
            ClientFrame::Attach { id, session } => {
                sidecar.launches.attached(pid, &session.id);
                let reply = match sidecar.attach(&session, &host, &tx).await {
                    Ok(()) => ServerFrame::Ok { id },
                    Err(err) => ServerFrame::Error {
                        id: Some(id),
                        code: ErrorCode::DiscordUnavailable,
                        message: format!("cannot attach the session: {err}"),
                    },
                };
                let _ = tx.send(reply).await;
                continue;
            }
            ClientFrame::InboundAck { id, message_id } => {
                // Journaled before the next frame; Discord's ✅ and typing follow on
                // their own, so acknowledgements never queue behind REST calls (a
                // backlog of them would be offered again after a restart).
                if let Some((thread, message)) = sidecar.ack_inbound(&message_id) {
                    let sidecar = sidecar.clone();
                    tasks.spawn(async move { sidecar.show_received(thread, message).await });
                }
                let _ = tx.send(ServerFrame::Ok { id }).await;
                continue;
            }
            other => {
                spawn_request(&tasks, &sidecar, &tx, other);
                continue;
            }
        };
        let Some((id, outcome)) = accepted else { continue };
        let tx = tx.clone();
        let sidecar = sidecar.clone();
        sidecar.counters.in_flight.fetch_add(1, Ordering::SeqCst);
        tasks.spawn(async move {
            let mut reply = outcome.await.unwrap_or_else(|_| ServerFrame::Error {
                // The sidecar is stopping; the row stays journaled and is sent after a restart.
                id: None,
                code: ErrorCode::DiscordUnavailable,
                message: "the sidecar stopped before delivery; the message stays queued".into(),
            });
            // The outcome names the row's first request; a repeat under the same idempotency key has its own id.
            reply.set_request_id(&id);
            let _ = tx.send(reply).await;
            sidecar.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    sidecar.inbound.attached.lock().expect("attached lock").retain(|session_id, sender| {
        let kept = !sender.same_channel(&tx);
        if !kept {
            sidecar.typing.detached(session_id);
        }
        kept
    });
    drop(tx);
    let _ = writer.await;
    sidecar.counters.clients.fetch_sub(1, Ordering::SeqCst);
}

/// Frames the connection loop answers itself never reach a spawned task.
pub(super) fn unhandled(id: String) -> ServerFrame {
    ServerFrame::Error { id: Some(id), code: ErrorCode::MalformedFrame, message: "unexpected frame".to_owned() }
}

/// Answers a request that needs no journal, in its own task.
pub(super) fn spawn_request(
    tasks: &TaskTracker,
    sidecar: &Arc<Sidecar>,
    tx: &mpsc::Sender<ServerFrame>,
    frame: ClientFrame,
) {
    let sidecar = sidecar.clone();
    let tx = tx.clone();
    sidecar.counters.in_flight.fetch_add(1, Ordering::SeqCst);
    tasks.spawn(async move {
        let reply = match frame {
            ClientFrame::Hello(_) => ServerFrame::Error {
                id: None,
                code: ErrorCode::MalformedFrame,
                message: "hello was already sent on this connection".to_owned(),
            },
            ClientFrame::Notify(request) => unhandled(request.id),
            ClientFrame::Attach { id, .. } | ClientFrame::InboundAck { id, .. } => unhandled(id),
            ClientFrame::Approve { id, session, tool_call_id, tool, input } => {
                sidecar.approve(id, session, tool_call_id, tool, input).await
            }
            ClientFrame::Read { id, channel_id, session, limit, before, after } => {
                sidecar.read(id, channel_id, session, limit, before, after).await
            }
            ClientFrame::Directory { id, guild_id } => sidecar.directory(id, guild_id).await,
            ClientFrame::Ask { id, session, ask_id, question, options, timeout_secs } => {
                sidecar.ask(id, session, ask_id, question, options, timeout_secs).await
            }
            ClientFrame::Status { id } => ServerFrame::Status { id, status: sidecar.status().await },
            ClientFrame::Shutdown { id } => {
                tracing::info!("shutdown requested over the socket");
                sidecar.shutdown.cancel();
                ServerFrame::ShuttingDown { id }
            }
        };
        let _ = tx.send(reply).await;
        sidecar.counters.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
}
