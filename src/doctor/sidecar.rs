//! The checks of the sidecar on this machine: the socket's directory (owned
//! by this user, private) and the handshake with a running sidecar (its version).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use omp_discord_core::protocol::{
    ClientFrame, Hello, PROTOCOL_VERSION, ServerFrame, decode_server_frame, encode_frame,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::Check;

/// The socket directory's check, then the sidecar's.
pub(super) async fn checks(socket: &Path) -> Vec<Check> {
    let mut checks = Vec::new();
    let dir = socket.parent().unwrap_or(Path::new("/"));
    match std::fs::metadata(dir) {
        Err(_) => {
            checks.push(Check::ok("socket", format!("{} does not exist yet (the sidecar creates it)", dir.display())))
        }
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            let uid = rustix::process::getuid().as_raw();
            if meta.uid() != uid {
                checks.push(Check::fail(
                    "socket",
                    format!("{} belongs to uid {}, not to you (uid {uid})", dir.display(), meta.uid()),
                    format!(
                        "remove it (`rm -r {}`) or set OMP_DISCORD_SOCKET to a path in a directory you own",
                        dir.display()
                    ),
                ));
            } else if mode & 0o077 != 0 {
                checks.push(Check::fail(
                    "socket",
                    format!("{} has mode {mode:o}; other users could reach the sidecar", dir.display()),
                    format!("run `chmod 700 {}`", dir.display()),
                ));
            } else {
                checks.push(Check::ok("socket", format!("{} is private (mode {mode:o})", dir.display())));
            }
        }
    }
    let handshake = handshake(socket).await;
    if let Handshake::Welcome { gateway_close: Some((code, advice)), .. } = &handshake {
        checks.push(Check::fail(
            "gateway",
            format!("the running sidecar's gateway closed for good (close {code}): replies from Discord stopped"),
            advice.clone(),
        ));
    }
    if let Handshake::Welcome { held, .. } = &handshake
        && !held.is_empty()
    {
        checks.push(Check::fail(
            "destinations",
            format!("Discord refuses the bot in {}; their messages wait", held.join("; ")),
            "give the bot View Channel, Send Messages, Send Messages in Threads, Create Public Threads, Embed Links \
             and Attach Files there (Server Settings → Roles, or the channel's Permissions); it tries again as soon \
             as the channel or a role changes",
        ));
    }
    checks.push(match handshake {
        Handshake::Absent => Check::ok(
            "sidecar",
            "not running (OMP starts it on demand; `omp-discord install-service` keeps one running)",
        ),
        Handshake::Welcome { version, .. } if version == env!("CARGO_PKG_VERSION") => {
            Check::ok("sidecar", format!("running, version {version}, protocol {PROTOCOL_VERSION}"))
        }
        Handshake::Welcome { version, .. } => Check::warn(
            "sidecar",
            format!("running version {version}, but this binary is {}", env!("CARGO_PKG_VERSION")),
            "run `omp-discord stop`; the next OMP session (or the service) starts the new one",
        ),
        Handshake::Refused(message) => Check::fail(
            "sidecar",
            format!("the running sidecar refused this client: {message}"),
            "run `omp-discord stop` so the matching sidecar starts next time",
        ),
        Handshake::Broken(why) => Check::fail(
            "sidecar",
            format!("something listens on {} but does not answer as a sidecar: {why}", socket.display()),
            format!("stop that process, or remove {} if nothing runs", socket.display()),
        ),
    });
    checks
}

/// What answered at the socket.
enum Handshake {
    Absent,
    /// A sidecar answered; `gateway_close`: the close code that ended its
    /// gateway for good, and what to do, if one did.
    Welcome {
        version: String,
        gateway_close: Option<(u16, String)>,
        /// Destinations the sidecar holds (`destination (code: reason)`).
        held: Vec<String>,
    },
    Refused(String),
    Broken(String),
}

/// Says hello at `socket`, reads the answer and then the sidecar's status, within 5 s.
async fn handshake(socket: &Path) -> Handshake {
    let Ok(stream) = tokio::net::UnixStream::connect(socket).await else { return Handshake::Absent };
    let (read, mut write) = stream.into_split();
    let hello = ClientFrame::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        client: concat!("doctor/", env!("CARGO_PKG_VERSION")).to_owned(),
        pid: std::process::id(),
        host: crate::client::hostname(),
    });
    let status = ClientFrame::Status { id: "doctor".into() };
    let mut reader = BufReader::new(read);
    let exchange = async {
        write.write_all(encode_frame(&hello).as_bytes()).await?;
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        Ok::<_, std::io::Error>(line)
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Err(_) => Handshake::Broken("no answer within 5 s".into()),
        Ok(Err(err)) => Handshake::Broken(err.to_string()),
        Ok(Ok(line)) => match decode_server_frame(line.as_bytes()) {
            Ok(ServerFrame::Welcome { version, .. }) => {
                let asked = async {
                    write.write_all(encode_frame(&status).as_bytes()).await?;
                    let mut line = String::new();
                    reader.read_line(&mut line).await?;
                    Ok::<_, std::io::Error>(line)
                };
                let status = match tokio::time::timeout(Duration::from_secs(5), asked).await {
                    Ok(Ok(line)) => match decode_server_frame(line.as_bytes()) {
                        Ok(ServerFrame::Status { status, .. }) => status,
                        _ => serde_json::Value::Null,
                    },
                    _ => serde_json::Value::Null,
                };
                Handshake::Welcome { version, gateway_close: fatal_close(&status), held: held(&status) }
            }
            Ok(ServerFrame::Error { message, .. }) => Handshake::Refused(message),
            Ok(other) => Handshake::Broken(format!("unexpected answer {other:?}")),
            Err(err) => Handshake::Broken(err.to_string()),
        },
    }
}

/// The destinations the sidecar holds, from its status.
fn held(status: &serde_json::Value) -> Vec<String> {
    let text = |value: &serde_json::Value| value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    status["held"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hold| format!("{} ({}: {})", text(&hold["destination"]), hold["code"], text(&hold["reason"])))
        .collect()
}

/// The close code that ended the sidecar's gateway for good, and the advice
/// for it, from its status.
fn fatal_close(status: &serde_json::Value) -> Option<(u16, String)> {
    let close = &status["gateway_close"];
    let code = u16::try_from(close["code"].as_u64()?).ok()?;
    Some((code, close["advice"].as_str().unwrap_or_default().to_owned()))
}
