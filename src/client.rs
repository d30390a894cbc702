//! Clients of the sidecar's socket: [`Connection`], one request at a time
//! for the CLI (`status`, `stop`, `notify`), and [`Link`], many requests at
//! once over one connection for `omp-discord mcp`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use omp_discord_core::protocol::{
    ClientFrame, Hello, PROTOCOL_VERSION, ServerFrame, decode_server_frame, encode_frame,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long the CLI waits for the sidecar.
const DEADLINE: Duration = Duration::from_secs(5);

/// Nothing answers at the socket: no sidecar runs there (or, through an SSH
/// forward, none runs on the other machine). Callers tell it apart from other
/// failures with `anyhow::Error::downcast_ref`.
#[derive(Debug, thiserror::Error)]
#[error(
    "no omp-discord sidecar is running at {} ({reason}); start one with `omp-discord serve` \
     (or keep one running with `omp-discord install-service`)",
    path.display()
)]
pub struct NotRunning {
    /// The socket that was tried.
    pub path: PathBuf,
    /// What the connection attempt saw.
    pub reason: String,
}

/// A connection that has completed the handshake.
pub struct Connection {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Connection {
    /// Connects to the sidecar at `path` and says hello.
    ///
    /// # Errors
    ///
    /// [`NotRunning`] when nothing listens there (no socket file, a stale one,
    /// or a connection closed before the handshake, as an SSH forward does
    /// when the far end has no sidecar); otherwise when the sidecar refuses
    /// the handshake or does not answer.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let not_running = |reason: &str| NotRunning { path: path.to_owned(), reason: reason.to_owned() };
        let stream = match UnixStream::connect(path).await {
            Ok(stream) => stream,
            Err(err) if err.kind() == ErrorKind::NotFound => return Err(not_running("no socket file").into()),
            Err(err) if err.kind() == ErrorKind::ConnectionRefused => {
                return Err(not_running("a stale socket file; nothing listens on it").into());
            }
            Err(err) => {
                return Err(anyhow::Error::new(err).context(format!("cannot connect to {}", path.display())));
            }
        };
        let (read, writer) = stream.into_split();
        let mut connection = Self { reader: BufReader::new(read), writer };
        let hello = ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: concat!("cli/", env!("CARGO_PKG_VERSION")).to_owned(),
            pid: std::process::id(),
            host: hostname(),
        });
        let welcome = match connection.call(&hello).await {
            Err(err)
                if err.downcast_ref::<Closed>().is_some()
                    || err
                        .downcast_ref::<std::io::Error>()
                        .is_some_and(|e| matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset)) =>
            {
                return Err(not_running(
                    "the connection closed before the handshake; through an SSH forward: no sidecar runs on the \
                     other side, or it refused the SSH login's user",
                )
                .into());
            }
            other => other?,
        };
        match welcome {
            ServerFrame::Welcome { .. } => Ok(connection),
            ServerFrame::Error { message, .. } => {
                bail!("the sidecar refused the connection: {message}")
            }
            other => bail!("unexpected answer to hello: {other:?}"),
        }
    }

    /// Sends a frame and reads the next answer.
    ///
    /// # Errors
    ///
    /// On I/O failure, a timeout, or an unreadable answer.
    pub async fn call(&mut self, frame: &ClientFrame) -> anyhow::Result<ServerFrame> {
        tokio::time::timeout(DEADLINE, async {
            self.writer.write_all(encode_frame(frame).as_bytes()).await?;
            self.read_frame().await
        })
        .await
        .context("the sidecar did not answer within 5 s")?
    }

    /// Reads the next frame the sidecar sends (e.g. `delivered` after
    /// `accepted`); `None` when none arrives within `deadline`.
    ///
    /// # Errors
    ///
    /// On I/O failure, a closed connection, or an unreadable frame.
    pub async fn next(&mut self, deadline: Duration) -> anyhow::Result<Option<ServerFrame>> {
        match tokio::time::timeout(deadline, self.read_frame()).await {
            Ok(frame) => frame.map(Some),
            Err(_) => Ok(None),
        }
    }

    async fn read_frame(&mut self) -> anyhow::Result<ServerFrame> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Err(Closed.into());
        }
        Ok(decode_server_frame(line.as_bytes())?)
    }
}

/// The sidecar closed the connection.
#[derive(Debug, thiserror::Error)]
#[error("the sidecar closed the connection")]
struct Closed;

/// This machine's host name, for the handshake.
pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}

/// How often [`Link`] sends a request whose sidecar went away before answering.
const MAX_ATTEMPTS: u32 = 3;

/// A random name for this client instance (16 hex digits), the prefix of its
/// request ids and idempotency keys: unique among every client of a sidecar,
/// also across restarts and machines.
pub fn instance_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    // std's RandomState is seeded from the OS's randomness once per process, then
    // counts up per instance: mixed with the time and pid, a fresh 64-bit name.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    hasher.write_u128(now.as_nanos());
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

/// How long [`Link`] tries to reach a sidecar (starting one if none answers).
const CONNECT_DEADLINE: Duration = Duration::from_secs(10);

/// Why a request through a [`Link`] has no answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No sidecar answered, and starting one did not help.
    #[error("{0}")]
    Unavailable(String),
    /// The sidecar refused the handshake (e.g. another protocol version).
    #[error("the sidecar refused the connection: {0}")]
    Refused(String),
    /// The connection was lost before the answer, and asking again was not safe or did not help.
    #[error("{0}")]
    Lost(String),
    /// No answer within the wait.
    #[error("the sidecar did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
}

type Pending = std::sync::Mutex<std::collections::HashMap<String, tokio::sync::mpsc::UnboundedSender<ServerFrame>>>;

/// One live connection of a [`Link`]: a writer, and a reader task that hands
/// each answer to the request with its id.
struct Conn {
    writer: tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>,
    pending: std::sync::Arc<Pending>,
    closed: tokio_util::sync::CancellationToken,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A long-lived client of the sidecar (for `omp-discord mcp`): one connection
/// carries many requests at once, answers are matched by request id (the
/// sidecar may answer out of order), and unrequested frames such as
/// `inbound` are ignored. When no sidecar answers it starts one (detached,
/// like the OMP extension does); when the sidecar went away it reconnects.
pub struct Link {
    socket: std::path::PathBuf,
    client: String,
    /// The program to start as `serve --exit-when-idle 600` when nothing listens.
    sidecar_bin: Option<std::path::PathBuf>,
    conn: tokio::sync::Mutex<Option<std::sync::Arc<Conn>>>,
    /// Request ids: unique per process and start, so they never repeat across restarts.
    prefix: String,
    next: std::sync::atomic::AtomicU64,
}

/// Drops a request's answer slot however the request ends (including cancellation).
struct Slot<'a> {
    pending: &'a Pending,
    id: String,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.pending.lock().expect("pending lock").remove(&self.id);
    }
}

impl Link {
    /// A link to the sidecar at `socket`; `sidecar_bin` is started when nothing listens there.
    pub fn new(socket: std::path::PathBuf, client: String, sidecar_bin: Option<std::path::PathBuf>) -> Self {
        Self {
            socket,
            client,
            sidecar_bin,
            conn: tokio::sync::Mutex::new(None),
            prefix: instance_name(),
            next: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// An id no other request of any `Link` on this machine uses.
    pub fn fresh_id(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        format!("{}-{n}", self.prefix)
    }

    /// Sends `frame` with a fresh id and waits up to `wait` for its answer. A
    /// `notify` is done at `delivered` or an error; if only `accepted` came
    /// in time, that is the answer (journaled: it will still be posted).
    /// When the sidecar goes away before answering, the request is asked
    /// again on a new connection (a `notify` under the idempotency key it is
    /// given here, so the sidecar journals it once however often it arrives).
    ///
    /// # Errors
    ///
    /// No sidecar could be reached or started, it refused the handshake, it
    /// went away, or it did not answer within `wait`.
    pub async fn request(&self, mut frame: ClientFrame, wait: Duration) -> Result<ServerFrame, LinkError> {
        if let ClientFrame::Notify(notify) = &mut frame
            && notify.idempotency_key.is_none()
        {
            notify.idempotency_key = Some(self.fresh_id());
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let conn = self.connection().await?;
            let id = self.fresh_id();
            frame.set_id(id.clone());
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            conn.pending.lock().expect("pending lock").insert(id.clone(), tx);
            let _slot = Slot { pending: &conn.pending, id };
            let written = {
                let mut writer = conn.writer.lock().await;
                writer.write_all(encode_frame(&frame).as_bytes()).await
            };
            if let Err(err) = written {
                conn.closed.cancel();
                if attempt < MAX_ATTEMPTS {
                    tracing::debug!(error = %err, "the sidecar connection was gone; reconnecting");
                    continue;
                }
                return Err(LinkError::Lost(format!("cannot write to the sidecar: {err}")));
            }
            let deadline = tokio::time::Instant::now() + wait;
            let mut accepted = None;
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(frame @ ServerFrame::Accepted { .. })) => accepted = Some(frame),
                    Ok(Some(frame)) => return Ok(frame),
                    Ok(None) => break,
                    Err(_) => return accepted.ok_or(LinkError::Timeout(wait)),
                }
            }
            // The connection closed before the answer.
            if let Some(accepted) = accepted {
                return Ok(accepted);
            }
            if attempt >= MAX_ATTEMPTS {
                return Err(LinkError::Lost(format!("the sidecar went away {MAX_ATTEMPTS} times while answering")));
            }
            tracing::debug!("the sidecar went away mid-request; asking again on a new connection");
        }
    }

    /// Reaches the sidecar (starting it if none answers) without asking anything.
    ///
    /// # Errors
    ///
    /// As [`Link::request`], when no sidecar could be reached.
    pub async fn connect(&self) -> Result<(), LinkError> {
        self.connection().await.map(|_| ())
    }

    /// The live connection, or a new one.
    async fn connection(&self) -> Result<std::sync::Arc<Conn>, LinkError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| !c.closed.is_cancelled()) {
            return Ok(conn.clone());
        }
        *slot = None;
        let conn = std::sync::Arc::new(self.open().await?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    /// Connects, starting the sidecar once if nothing listens, until [`CONNECT_DEADLINE`].
    async fn open(&self) -> Result<Conn, LinkError> {
        let started = tokio::time::Instant::now();
        let mut child: Option<tokio::process::Child> = None;
        let mut delay = Duration::from_millis(25);
        loop {
            let err = match self.handshake().await {
                Ok(conn) => return Ok(conn),
                Err(Handshake::Refused(message)) => return Err(LinkError::Refused(message)),
                Err(Handshake::Io(err)) => err,
            };
            match (&mut child, &self.sidecar_bin) {
                (None, Some(bin)) => child = Some(spawn_sidecar(bin, &self.socket)?),
                (Some(running), Some(bin)) => {
                    // Exit 0 means another sidecar won the race to the socket: keep trying.
                    if let Ok(Some(status)) = running.try_wait()
                        && !status.success()
                    {
                        return Err(LinkError::Unavailable(format!(
                            "no omp-discord sidecar answered at {}, and the one started (`{} serve`) exited \
                             with {status}; run `omp-discord serve` in a terminal to see why, or `omp-discord \
                             doctor`",
                            self.socket.display(),
                            bin.display()
                        )));
                    }
                }
                _ => {}
            }
            if started.elapsed() > CONNECT_DEADLINE {
                let hint = match &self.sidecar_bin {
                    Some(bin) => format!(
                        "; `{} serve --exit-when-idle 600` was started but did not listen — run `omp-discord \
                         serve` in a terminal to see why",
                        bin.display()
                    ),
                    None => "; start it with `omp-discord serve`".to_owned(),
                };
                return Err(LinkError::Unavailable(format!(
                    "no omp-discord sidecar answered at {} within {} s ({err}){hint}",
                    self.socket.display(),
                    CONNECT_DEADLINE.as_secs()
                )));
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_millis(400));
        }
    }

    async fn handshake(&self) -> Result<Conn, Handshake> {
        let stream = UnixStream::connect(&self.socket).await.map_err(Handshake::Io)?;
        let (read, mut writer) = stream.into_split();
        let mut reader = BufReader::new(read);
        let hello = ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: self.client.clone(),
            pid: std::process::id(),
            host: hostname(),
        });
        writer.write_all(encode_frame(&hello).as_bytes()).await.map_err(Handshake::Io)?;
        let mut line = String::new();
        let read = tokio::time::timeout(DEADLINE, reader.read_line(&mut line)).await;
        match read {
            Ok(Ok(n)) if n > 0 => {}
            Ok(Err(err)) => return Err(Handshake::Io(err)),
            Ok(Ok(_)) => return Err(Handshake::Io(std::io::ErrorKind::UnexpectedEof.into())),
            Err(_) => return Err(Handshake::Io(std::io::ErrorKind::TimedOut.into())),
        }
        match decode_server_frame(line.as_bytes()) {
            Ok(ServerFrame::Welcome { .. }) => {}
            Ok(ServerFrame::Error { message, .. }) => return Err(Handshake::Refused(message)),
            Ok(other) => return Err(Handshake::Refused(format!("unexpected answer to hello: {other:?}"))),
            Err(err) => return Err(Handshake::Refused(err.to_string())),
        }
        let pending: std::sync::Arc<Pending> = std::sync::Arc::default();
        let closed = tokio_util::sync::CancellationToken::new();
        let reader = tokio::spawn(read_answers(reader, pending.clone(), closed.clone()));
        Ok(Conn { writer: tokio::sync::Mutex::new(writer), pending, closed, reader })
    }
}

enum Handshake {
    Io(std::io::Error),
    Refused(String),
}

/// Hands each answer to its request until the connection ends; then every
/// waiting request learns it (its channel closes).
async fn read_answers(
    mut reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    pending: std::sync::Arc<Pending>,
    closed: tokio_util::sync::CancellationToken,
) {
    let mut line = String::new();
    loop {
        line.clear();
        let read = tokio::select! {
            () = closed.cancelled() => break,
            read = reader.read_line(&mut line) => read,
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let frame = match decode_server_frame(line.as_bytes()) {
            Ok(frame) => frame,
            Err(err) => {
                tracing::debug!(error = %err, "ignored an unreadable frame from the sidecar");
                continue;
            }
        };
        let id = frame.request_id().map(str::to_owned);
        let Some(id) = id else {
            tracing::debug!(?frame, "ignored a frame for no request");
            continue;
        };
        if let Some(tx) = pending.lock().expect("pending lock").get(&id) {
            let _ = tx.send(frame);
        }
    }
    closed.cancel();
    pending.lock().expect("pending lock").clear();
}

/// Starts `bin serve --exit-when-idle 600` detached: its own process group,
/// no stdio (stdout is the MCP protocol), so it serves every client of this
/// user and outlives this process. The token reaches it through the
/// environment or its config, never the command line.
fn spawn_sidecar(bin: &Path, socket: &Path) -> Result<tokio::process::Child, LinkError> {
    tracing::info!(bin = %bin.display(), socket = %socket.display(), "no sidecar answered; starting one");
    tokio::process::Command::new(bin)
        .args(["serve", "--exit-when-idle", "600"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|err| {
            LinkError::Unavailable(format!(
                "no omp-discord sidecar answered at {}, and starting `{} serve` failed ({err}); start it with \
                 `omp-discord serve`",
                socket.display(),
                bin.display()
            ))
        })
}
