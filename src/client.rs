//! A small blocking-free client of the sidecar's socket, for the CLI
//! (`status`, `stop`) and tests.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use omp_discord_core::protocol::{
    ClientFrame, Hello, PROTOCOL_VERSION, ServerFrame, decode_server_frame, encode_frame,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// How long the CLI waits for the sidecar.
const DEADLINE: Duration = Duration::from_secs(5);

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
    /// When nothing listens there, or the sidecar refuses the handshake.
    pub async fn open(path: &Path) -> anyhow::Result<Self> {
        let stream = UnixStream::connect(path).await.with_context(|| {
            format!("no omp-discord sidecar is running at {} (start it with `omp-discord serve`)", path.display())
        })?;
        let (read, writer) = stream.into_split();
        let mut connection = Self { reader: BufReader::new(read), writer };
        let hello = ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: concat!("cli/", env!("CARGO_PKG_VERSION")).to_owned(),
            pid: std::process::id(),
            host: hostname(),
        });
        match connection.call(&hello).await? {
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
            let mut line = String::new();
            if self.reader.read_line(&mut line).await? == 0 {
                bail!("the sidecar closed the connection");
            }
            Ok(decode_server_frame(line.as_bytes())?)
        })
        .await
        .context("the sidecar did not answer within 5 s")?
    }
}

/// This machine's host name, for the handshake.
pub fn hostname() -> String {
    rustix::system::uname().nodename().to_string_lossy().into_owned()
}
