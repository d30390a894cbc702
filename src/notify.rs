//! `omp-discord notify`: post from shell scripts, cron or CI through the
//! running sidecar, so a script's message takes the same way as an OMP
//! session's: core's embed builder and redaction, the sidecar's second
//! redaction and limit check, its journal, nonce and retries.
//!
//! The exit code says what became of the message (see [`ExitStatus`]); it
//! never starts a sidecar itself (see `docs/operations.md` for why): with
//! none answering, the message waits in the spool for the next one. Its
//! idempotency key makes every way there (a retry after a lost connection,
//! the spool) journal it once.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use omp_discord_core::embed::{Level, Notification, TRUNCATION_MARKER, build_notification, limits};
use omp_discord_core::format::project_name;
use omp_discord_core::protocol::{ClientFrame, ErrorCode, NotifyRequest, ServerFrame, SessionRef};
use serde_json::json;

use crate::client::{Connection, NotRunning, hostname, instance_name};

/// Most bytes read from stdin; the rest is left unread. Generous on purpose:
/// the text is redacted before it is cut to Discord's limit, so a secret
/// near the cut is still recognised whole.
const MAX_STDIN_BYTES: usize = 1024 * 1024;

/// What the exit code reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// Discord has the message (0).
    Delivered = 0,
    /// The sidecar refused it or Discord rejected it (1).
    Failed = 1,
    /// Nothing to send: empty text (2, like a usage error).
    Usage = 2,
    /// No sidecar answered, and the message could not be spooled either
    /// (69, `EX_UNAVAILABLE`).
    NoSidecar = 69,
    /// No sidecar answered; the message waits in the local spool, and the
    /// next sidecar journals it exactly once (3).
    Spooled = 3,
    /// Journaled by the sidecar, but Discord did not confirm in time; the
    /// sidecar keeps retrying (75, `EX_TEMPFAIL`).
    Queued = 75,
}

/// The command's options.
#[derive(Debug)]
pub struct Options {
    /// Post into this OMP session's thread.
    pub thread: Option<String>,
    /// Post into this channel instead of a session's thread.
    pub channel: Option<u64>,
    /// Colour and label.
    pub level: Level,
    /// Headline.
    pub title: Option<String>,
    /// The text, or `-` for stdin.
    pub text: String,
    /// Print the outcome as JSON.
    pub json: bool,
    /// How long to wait for Discord's confirmation once the sidecar journaled the message.
    pub wait: Duration,
}

/// What became of the message.
#[derive(Debug)]
enum Outcome {
    Delivered { seq: i64, channel_id: String, message_id: String },
    Queued { seq: i64, reason: String },
    Failed { code: String, message: String, hint: &'static str },
    NoSidecar { message: String },
    Spooled { file: PathBuf, reason: String },
    Usage { message: String },
}

impl Outcome {
    fn status(&self) -> ExitStatus {
        match self {
            Self::Delivered { .. } => ExitStatus::Delivered,
            Self::Queued { .. } => ExitStatus::Queued,
            Self::Failed { .. } => ExitStatus::Failed,
            Self::NoSidecar { .. } => ExitStatus::NoSidecar,
            Self::Spooled { .. } => ExitStatus::Spooled,
            Self::Usage { .. } => ExitStatus::Usage,
        }
    }
}

/// Runs `omp-discord notify`.
///
/// # Errors
///
/// Never for the outcomes above (they become exit codes); only when stdout cannot be written.
pub async fn run(options: Options) -> anyhow::Result<ExitCode> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let host = hostname();
    let session = match &options.thread {
        Some(id) => SessionRef { id: id.clone(), cwd: Some(cwd.display().to_string()), prompt: None },
        None => SessionRef {
            id: session_id(&host, &cwd),
            cwd: Some(cwd.display().to_string()),
            prompt: Some("notifications".to_owned()),
        },
    };
    let mut notes = Vec::new();
    let (outcome, truncated) = match read_text(&options.text, &mut notes) {
        Err(outcome) => (outcome, false),
        Ok(text) => {
            let note = Notification {
                title: options.title.clone(),
                message: text.clone(),
                level: options.level,
                fields: Vec::new(),
            };
            let payload = build_notification(&note, &project_name(&cwd.display().to_string()));
            let truncated = payload.embeds[0].description.as_deref().is_some_and(|d| d.ends_with(TRUNCATION_MARKER))
                && !text.ends_with(TRUNCATION_MARKER);
            if truncated {
                notes.push(format!(
                    "the text has {} characters; a notification holds {}, so it was cut (marked \"{TRUNCATION_MARKER}\")",
                    text.chars().count(),
                    limits::DESCRIPTION
                ));
            }
            let request = NotifyRequest {
                id: format!("cli-{}", std::process::id()),
                session: session.clone(),
                message: payload,
                channel_id: options.channel.map(|c| c.to_string()),
                key: None,
                edit: false,
                idempotency_key: Some(format!("{}-1", instance_name())),
            };
            (send(request, options.wait).await, truncated)
        }
    };
    report(&options, &session.id, &outcome, truncated, &notes)?;
    Ok(ExitCode::from(outcome.status() as u8))
}

/// `cli-<directory name>-<8 hex digits of host and path>`: every script run in
/// one directory of one machine shares a thread; other directories and other
/// machines (behind an SSH-forwarded socket) get their own.
fn session_id(host: &str, cwd: &Path) -> String {
    let name: String = project_name(&cwd.display().to_string())
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '_' })
        .take(32)
        .collect();
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in host.bytes().chain([0]).chain(cwd.as_os_str().as_encoded_bytes().iter().copied()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("cli-{name}-{:08x}", hash >> 32)
}

/// The text: the argument, or stdin for `-` (at most [`MAX_STDIN_BYTES`]).
fn read_text(arg: &str, notes: &mut Vec<String>) -> Result<String, Outcome> {
    let text = if arg == "-" {
        let mut bytes = Vec::new();
        let read = std::io::stdin().lock().take(MAX_STDIN_BYTES as u64 + 1).read_to_end(&mut bytes);
        if let Err(err) = read {
            return Err(Outcome::Failed {
                code: "stdin".into(),
                message: format!("cannot read stdin: {err}"),
                hint: "pipe the text in, or pass it as the argument",
            });
        }
        if bytes.len() > MAX_STDIN_BYTES {
            // Cut at a line end, so no token is split in two (half a secret may not look like one).
            bytes.truncate(MAX_STDIN_BYTES);
            if let Some(end) = bytes.iter().rposition(|b| *b == b'\n') {
                bytes.truncate(end);
            }
            notes.push(format!(
                "stdin holds more than {MAX_STDIN_BYTES} bytes; only the first {} were read",
                bytes.len()
            ));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    } else {
        arg.to_owned()
    };
    if text.trim().is_empty() {
        return Err(Outcome::Usage { message: "the text is empty; there is nothing to send".into() });
    }
    Ok(text)
}

/// How often the message is sent when the sidecar goes away before journaling it.
const MAX_ATTEMPTS: u32 = 3;

async fn send(request: NotifyRequest, wait: Duration) -> Outcome {
    let socket = match crate::config::default_socket_path() {
        Ok(path) => path,
        Err(err) => return Outcome::NoSidecar { message: err.to_string() },
    };
    let mut lost = String::new();
    for _ in 0..MAX_ATTEMPTS {
        let connection = match Connection::open(&socket).await {
            Ok(connection) => connection,
            Err(err) if err.downcast_ref::<NotRunning>().is_some() => return spool(request, err.to_string()),
            Err(err) => {
                return Outcome::Failed {
                    code: "connection".into(),
                    message: format!("{err:#}"),
                    hint: "`omp-discord status` and `omp-discord doctor` show what is wrong with the sidecar",
                };
            }
        };
        match attempt(connection, &request, wait).await {
            Ok(outcome) => return outcome,
            // Sent again under the same idempotency key: journaled once, whether the first one was or not.
            Err(err) => lost = format!("{err:#}"),
        }
    }
    spool(request, format!("the sidecar went away {MAX_ATTEMPTS} times before journaling the message ({lost})"))
}

/// One try on one connection; `Err` when the connection failed before `accepted`.
async fn attempt(mut connection: Connection, request: &NotifyRequest, wait: Duration) -> anyhow::Result<Outcome> {
    let seq = match connection.call(&ClientFrame::Notify(request.clone())).await? {
        ServerFrame::Accepted { seq, .. } => seq,
        ServerFrame::Error { code, message, .. } => return Ok(failed(code, message)),
        other => return Ok(unexpected(&other)),
    };
    Ok(match connection.next(wait).await {
        Ok(Some(ServerFrame::Delivered { channel_id, message_id, .. })) => {
            Outcome::Delivered { seq, channel_id, message_id }
        }
        // After `accepted`, "unavailable" and "held" mean the row stays journaled and is retried.
        Ok(Some(ServerFrame::Error {
            code: ErrorCode::DiscordUnavailable | ErrorCode::DestinationHeld,
            message,
            ..
        })) => Outcome::Queued { seq, reason: message },
        Ok(Some(ServerFrame::Error { code, message, .. })) => failed(code, message),
        Ok(Some(other)) => unexpected(&other),
        Ok(None) => Outcome::Queued { seq, reason: format!("Discord did not confirm within {} s", wait.as_secs()) },
        Err(err) => Outcome::Queued { seq, reason: format!("{err:#} after journaling the message") },
    })
}

/// Leaves the message in `<state>/spool/` (0600, in a 0700 directory) for
/// the next sidecar, as the OMP extension does with what no sidecar took.
fn spool(request: NotifyRequest, reason: String) -> Outcome {
    let written = crate::config::default_spool_dir().map_err(anyhow::Error::from).and_then(|dir| {
        write_spool_file(
            &dir,
            &omp_discord_core::shim::client::spool_text(vec![ClientFrame::Notify(request)], std::process::id()),
        )
    });
    match written {
        Ok(file) => Outcome::Spooled { file, reason },
        Err(err) => {
            Outcome::NoSidecar { message: format!("{reason}; the message could not be spooled either: {err:#}") }
        }
    }
}

/// Writes a spool file whole (a temporary name, then a rename: a sidecar importing meanwhile never sees half).
fn write_spool_file(dir: &Path, text: &str) -> anyhow::Result<PathBuf> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let file = dir.join(format!("{}-{}.jsonl", now.as_millis(), std::process::id()));
    let partial = file.with_extension("jsonl.tmp");
    let mut out = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&partial)?;
    out.write_all(text.as_bytes())?;
    out.sync_all()?;
    std::fs::rename(&partial, &file)?;
    Ok(file)
}

fn failed(code: ErrorCode, message: String) -> Outcome {
    let hint = match code {
        ErrorCode::UnknownChannel => {
            "check the channel id (Discord: Developer Mode, then right-click the channel → Copy Channel ID) and \
             that the bot can see that channel"
        }
        ErrorCode::NotConfigured => "configure the sidecar as the message says (`omp-discord doctor` helps)",
        ErrorCode::InvalidMessage => "shorten the title or text",
        ErrorCode::DiscordRejected => "Discord refused the message; its reason is above",
        _ => "`omp-discord status` and `omp-discord doctor` show what is wrong with the sidecar",
    };
    Outcome::Failed { code: code.as_str().to_owned(), message, hint }
}

fn unexpected(frame: &ServerFrame) -> Outcome {
    Outcome::Failed {
        code: "protocol".into(),
        message: format!("unexpected answer from the sidecar: {frame:?}"),
        hint: "rebuild the CLI and the sidecar from the same checkout, then `omp-discord stop`",
    }
}

fn report(
    options: &Options,
    session: &str,
    outcome: &Outcome,
    truncated: bool,
    notes: &[String],
) -> anyhow::Result<()> {
    if options.json {
        let mut value = match outcome {
            Outcome::Delivered { seq, channel_id, message_id } => {
                json!({"outcome": "delivered", "seq": seq, "channel_id": channel_id, "message_id": message_id})
            }
            Outcome::Queued { seq, reason } => json!({"outcome": "queued", "seq": seq, "reason": reason}),
            Outcome::Failed { code, message, hint } => {
                json!({"outcome": "failed", "code": code, "message": message, "hint": hint})
            }
            Outcome::NoSidecar { message } => json!({"outcome": "no_sidecar", "message": message}),
            Outcome::Spooled { file, reason } => {
                json!({"outcome": "spooled", "file": file.display().to_string(), "reason": reason})
            }
            Outcome::Usage { message } => json!({"outcome": "usage", "message": message}),
        };
        value["exit_code"] = json!(outcome.status() as u8);
        if options.channel.is_none() {
            value["session"] = json!(session);
        }
        value["truncated"] = json!(truncated);
        value["notes"] = json!(notes);
        println!("{value}");
        return Ok(());
    }
    for note in notes {
        eprintln!("omp-discord notify: note: {note}");
    }
    match outcome {
        Outcome::Delivered { channel_id, message_id, .. } => {
            println!("delivered: message {message_id} in channel {channel_id}");
        }
        Outcome::Queued { seq, reason } => eprintln!(
            "omp-discord notify: queued (outbox #{seq}): {reason}; the sidecar keeps the message and retries \
             (`omp-discord status` shows the queue)"
        ),
        Outcome::Failed { code, message, hint } => {
            eprintln!("omp-discord notify: failed ({code}): {message}\n  {hint}")
        }
        Outcome::NoSidecar { message } => eprintln!("omp-discord notify: {message}"),
        Outcome::Spooled { file, reason } => eprintln!(
            "omp-discord notify: spooled: {reason}\n  the message waits in {} and the next sidecar delivers it \
             once (start one with `omp-discord serve`, or keep one running with `omp-discord install-service`)",
            file.display()
        ),
        Outcome::Usage { message } => eprintln!("omp-discord notify: {message}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_stable_per_directory_and_host() {
        let a = session_id("box", Path::new("/srv/jobs/backup"));
        assert_eq!(a, session_id("box", Path::new("/srv/jobs/backup")));
        assert!(a.starts_with("cli-backup-") && a.len() == "cli-backup-".len() + 8, "{a}");
        assert_ne!(a, session_id("other", Path::new("/srv/jobs/backup")));
        assert_ne!(a, session_id("box", Path::new("/home/me/backup")));
        let odd = session_id("box", Path::new("/tmp/my project ✓"));
        assert!(odd.starts_with("cli-my_project__-"), "{odd}");
    }
}
