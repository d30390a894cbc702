//! The Unix socket: a private directory, one sidecar per socket (a lock file),
//! and peers limited to this user.

use std::fs::{DirBuilder, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{UnixListener, UnixStream};

/// A bound socket and the lock that makes this process its only server.
#[derive(Debug)]
pub struct BoundSocket {
    /// The listener.
    pub listener: UnixListener,
    /// The socket's path, removed on shutdown.
    pub path: PathBuf,
    /// Held for the life of the server; released on drop.
    _lock: File,
}

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another sidecar already serves this socket.
    #[error("another omp-discord sidecar is already running on {0}")]
    AlreadyRunning(PathBuf),
    /// The directory is shared with other users.
    #[error(
        "the socket directory {path} is owned by uid {owner} with mode {mode:o}; it must be yours with mode 700 \
         (run `chmod 700 {path}` or set OMP_DISCORD_SOCKET to a private path)"
    )]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
    /// Any other I/O failure.
    #[error("cannot create the socket {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Creates the socket's directory (0700), takes the sidecar lock, and binds the socket (0600).
///
/// # Errors
///
/// [`BindError`]: another sidecar holds the lock, the directory is not private, or I/O failed.
pub fn bind(path: &Path) -> Result<BoundSocket, BindError> {
    let io_err = |source| BindError::Io { path: path.to_owned(), source };
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err)?;
    let meta = std::fs::metadata(dir).map_err(io_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.uid() != rustix::process::getuid().as_raw() || mode & 0o077 != 0 {
        return Err(BindError::UnsafeDirectory { path: dir.to_owned(), owner: meta.uid(), mode });
    }
    let lock_path = path.with_extension("lock");
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io_err)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Err(BindError::AlreadyRunning(path.to_owned())),
        Err(TryLockError::Error(err)) => return Err(io_err(err)),
    }
    // The holder's pid, so that a sidecar that stops answering can be found and replaced.
    lock.set_len(0).and_then(|()| (&lock).write_all(format!("{}\n", std::process::id()).as_bytes())).map_err(io_err)?;
    // We hold the lock, so a socket file left here belongs to a sidecar that died.
    match std::fs::remove_file(path) {
        Ok(()) => tracing::info!(path = %path.display(), "removed a stale socket"),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {}
        Err(err) => return Err(io_err(err)),
    }
    let listener = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io_err)?;
    Ok(BoundSocket { listener, path: path.to_owned(), _lock: lock })
}

/// How long the sidecar holding the socket may take to answer a `hello`
/// before a stopped one (SIGSTOP, Ctrl-Z) is replaced. A running one that is
/// slow (a busy machine, a long start) is left alone, unless it stays silent
/// for [`SILENT_AFTER`] where the system cannot say whether it is stopped.
pub const HUNG_AFTER: Duration = Duration::from_secs(5);
/// How long a holder whose state is unknown may stay silent.
const SILENT_AFTER: Duration = Duration::from_secs(30);

/// The pid of the sidecar that holds the socket's lock but is stopped and
/// did not answer a `hello` within [`HUNG_AFTER`]; `None` when it answers
/// (or closes: it is stopping), runs (only slowly), or nothing tells who
/// holds the lock.
pub async fn hung_holder(path: &Path) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(path.with_extension("lock")).ok()?.trim().parse().ok()?;
    if answers_within(path, HUNG_AFTER).await {
        return None;
    }
    match stopped(pid) {
        Some(true) => Some(pid),
        Some(false) => None,
        None => (!answers_within(path, SILENT_AFTER - HUNG_AFTER).await).then_some(pid),
    }
}

/// Whether a process is stopped (`T`: SIGSTOP or Ctrl-Z; `t`: a debugger), from
/// `/proc`; `None` where there is no `/proc` (macOS) or no such process.
fn stopped(pid: u32) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The state follows the command name, which is in parentheses and may hold anything.
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?;
    Some(matches!(state, "T" | "t"))
}

/// Whether the sidecar at `path` answers a `hello` (anything, or closing) within `wait`.
async fn answers_within(path: &Path, wait: Duration) -> bool {
    use tokio::io::AsyncWriteExt;
    let probe = async {
        let mut stream = UnixStream::connect(path).await.ok()?;
        let hello = omp_discord_core::protocol::ClientFrame::Hello(omp_discord_core::protocol::Hello {
            protocol: omp_discord_core::protocol::PROTOCOL_VERSION,
            client: concat!("serve/", env!("CARGO_PKG_VERSION")).to_owned(),
            pid: std::process::id(),
            host: String::new(),
        });
        stream.write_all(omp_discord_core::protocol::encode_frame(&hello).as_bytes()).await.ok()?;
        let mut byte = [0_u8; 1];
        // Any answer (a welcome, an error, or the connection closing) means it runs.
        stream.read(&mut byte).await.ok()
    };
    tokio::time::timeout(wait, probe).await.is_ok()
}

/// Ends a hung sidecar with SIGKILL (a stopped process cannot handle
/// anything gentler); the kernel frees its lock as it goes. Only this user's
/// processes can be signalled.
///
/// # Errors
///
/// When the process cannot be signalled (another user's, or gone).
pub fn end_hung(pid: u32) -> io::Result<()> {
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).map_err(io::Error::other)?)
        .ok_or_else(|| io::Error::other("pid 0"))?;
    Ok(rustix::process::kill_process(pid, rustix::process::Signal::KILL)?)
}

/// Binds like [`bind`], waiting up to `wait` for a lock that is being released.
///
/// # Errors
///
/// As [`bind`], once `wait` has passed.
pub async fn bind_within(path: &Path, wait: Duration) -> Result<BoundSocket, BindError> {
    let start = std::time::Instant::now();
    loop {
        match bind(path) {
            Err(BindError::AlreadyRunning(_)) if start.elapsed() < wait => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Whether the peer runs as this user. Other users are refused even though the
/// directory's mode already keeps them out: a misconfigured path must not open
/// the bridge to the whole machine.
pub fn peer_is_same_user(stream: &UnixStream) -> io::Result<bool> {
    Ok(stream.peer_cred()?.uid() == rustix::process::getuid().as_raw())
}

/// One newline-terminated line read from a client.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    /// A line within the limit, without its newline.
    Frame(Vec<u8>),
    /// A line longer than the limit; it was read and thrown away.
    TooLong,
}

/// Reads newline-delimited frames with a length cap. An oversized line is
/// skipped up to its newline and reported once, and reading goes on: one bad
/// frame must not cost the client its connection.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a newline.
    scanned: usize,
    discarding: bool,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`; lines longer than `max` bytes (newline excluded) are refused.
    pub fn new(inner: R, max: usize) -> Self {
        Self { inner, buf: Vec::with_capacity(8 * 1024), scanned: 0, discarding: false, max }
    }

    /// The next line, or `None` at the end of the stream.
    ///
    /// # Errors
    ///
    /// When reading the socket fails.
    pub async fn next(&mut self) -> io::Result<Option<Line>> {
        loop {
            if let Some(offset) = self.buf[self.scanned..].iter().position(|b| *b == b'\n') {
                let end = self.scanned + offset;
                let line: Vec<u8> = self.buf.drain(..=end).take(end).collect();
                self.scanned = 0;
                if std::mem::take(&mut self.discarding) || line.len() > self.max {
                    return Ok(Some(Line::TooLong));
                }
                return Ok(Some(Line::Frame(line)));
            }
            self.scanned = self.buf.len();
            if self.buf.len() > self.max {
                self.discarding = true;
                self.buf.clear();
                self.scanned = 0;
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frame_reader_skips_oversized_lines_and_goes_on() {
        let mut input = b"{\"a\":1}\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100));
        input.extend(b"\nshort\nunterminated");
        let mut reader = FrameReader::new(&input[..], 10);
        assert_eq!(reader.next().await.unwrap(), Some(Line::Frame(b"{\"a\":1}".to_vec())));
        assert_eq!(reader.next().await.unwrap(), Some(Line::TooLong));
        assert_eq!(reader.next().await.unwrap(), Some(Line::Frame(b"short".to_vec())));
        assert_eq!(reader.next().await.unwrap(), None);
    }

    #[tokio::test]
    async fn frame_reader_accepts_a_line_at_the_limit() {
        let input = b"0123456789\n01234567890\n";
        let mut reader = FrameReader::new(&input[..], 10);
        assert_eq!(reader.next().await.unwrap(), Some(Line::Frame(b"0123456789".to_vec())));
        assert_eq!(reader.next().await.unwrap(), Some(Line::TooLong));
    }

    #[tokio::test]
    async fn socket_is_private_and_exclusive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/sidecar.sock");
        let bound = bind(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert!(matches!(bind(&path), Err(BindError::AlreadyRunning(_))));
        drop(bound);
        // The lock is released with the server; the stale socket file is replaced.
        bind(&path).unwrap();
    }

    #[test]
    fn a_stopped_process_is_told_from_a_running_one() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert_eq!(stopped(pid), Some(false));
        let signal = |name: &str| std::process::Command::new("kill").args([name, &pid.to_string()]).status().unwrap();
        assert!(signal("-STOP").success());
        let start = std::time::Instant::now();
        while stopped(pid) != Some(true) && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(stopped(pid), Some(true));
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(stopped(u32::MAX), None, "no such process");
    }

    #[tokio::test]
    async fn shared_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = bind(&shared.join("s.sock")).unwrap_err();
        assert!(matches!(err, BindError::UnsafeDirectory { mode: 0o755, .. }), "{err}");
        assert!(err.to_string().contains("chmod 700"));
    }

    #[tokio::test]
    async fn same_user_peer_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let bound = bind(&dir.path().join("p/s.sock")).unwrap();
        let client = UnixStream::connect(&bound.path).await.unwrap();
        let (server, _) = bound.listener.accept().await.unwrap();
        assert!(peer_is_same_user(&server).unwrap());
        drop(client);
    }
}
