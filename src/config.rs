//! The sidecar's configuration, read from the environment (a config file
//! comes later). Tokens come only from the environment, a 0600 file, or
//! systemd credentials, and are unprintable.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use omp_discord_core::paths::{SocketEnv, socket_path};
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;

/// A Discord bot token. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The token, for the one place that sends it to Discord.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where Discord's REST API is: the real one, or a local emulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiBase {
    /// `host:port` to send to instead of discord.com, when not the real Discord.
    pub proxy: Option<String>,
    /// Whether that proxy speaks plain HTTP.
    pub plain_http: bool,
}

impl ApiBase {
    /// Parses `OMP_DISCORD_API_URL` (`http://127.0.0.1:PORT` for the emulator).
    ///
    /// # Errors
    ///
    /// When the URL is not `http://host:port` or `https://host[:port]`.
    pub fn parse(url: Option<&str>) -> anyhow::Result<Self> {
        let Some(url) = url.filter(|u| !u.is_empty()) else {
            return Ok(Self { proxy: None, plain_http: false });
        };
        let url = url.trim_end_matches('/');
        let (plain_http, rest) = if let Some(rest) = url.strip_prefix("http://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("https://") {
            (false, rest)
        } else {
            bail!("OMP_DISCORD_API_URL must start with http:// or https://");
        };
        if rest.is_empty() || rest.contains('/') {
            bail!("OMP_DISCORD_API_URL must be a bare origin such as http://127.0.0.1:8080 (no path)");
        }
        Ok(Self { proxy: Some(rest.to_owned()), plain_http })
    }
}

/// Everything `omp-discord serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bot token, if one is configured.
    pub token: Option<Token>,
    /// The channel that receives notifications.
    pub home_channel: Option<Id<ChannelMarker>>,
    /// Discord's REST API location.
    pub api: ApiBase,
    /// The Unix socket the shims connect to.
    pub socket: PathBuf,
    /// Where the outbox and other durable state live.
    pub state_dir: PathBuf,
    /// Whether each session gets its own thread (else everything goes to the home channel).
    pub threads: bool,
}

/// Environment variable names, documented in the README's configuration table.
pub mod env {
    /// The bot token itself.
    pub const TOKEN: &str = "OMP_DISCORD_TOKEN";
    /// A file holding the bot token (must not be readable by group or others).
    pub const TOKEN_FILE: &str = "OMP_DISCORD_TOKEN_FILE";
    /// The home channel id.
    pub const CHANNEL_ID: &str = "OMP_DISCORD_CHANNEL_ID";
    /// Discord's API origin (an emulator's, in tests and the demo).
    pub const API_URL: &str = "OMP_DISCORD_API_URL";
    /// An explicit socket path.
    pub const SOCKET: &str = "OMP_DISCORD_SOCKET";
    /// The directory for durable state (the outbox).
    pub const STATE_DIR: &str = "OMP_DISCORD_STATE_DIR";
    /// `0`/`false`/`off` posts every session into the home channel instead of a thread each.
    pub const THREADS: &str = "OMP_DISCORD_THREADS";
    /// The log filter (tracing `EnvFilter` syntax).
    pub const LOG: &str = "OMP_DISCORD_LOG";
}

/// Name of the systemd credential (`LoadCredential=omp-discord-token:…`).
pub const SYSTEMD_CREDENTIAL: &str = "omp-discord-token";

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    ///
    /// When a value is malformed, or a token file is unreadable or readable by others.
    pub fn from_env() -> anyhow::Result<Self> {
        let token = read_token()?;
        let home_channel = match var(env::CHANNEL_ID) {
            Some(raw) => Some(parse_channel(&raw)?),
            None => None,
        };
        let api = ApiBase::parse(var(env::API_URL).as_deref())?;
        Ok(Self {
            token,
            home_channel,
            api,
            socket: default_socket_path()?,
            state_dir: default_state_dir()?,
            threads: parse_switch(env::THREADS, var(env::THREADS).as_deref(), true)?,
        })
    }
}

fn parse_switch(name: &str, raw: Option<&str>, default: bool) -> anyhow::Result<bool> {
    match raw.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None => Ok(default),
        Some("1" | "true" | "on" | "yes") => Ok(true),
        Some("0" | "false" | "off" | "no") => Ok(false),
        Some(other) => bail!("{name} must be on or off, not {other:?}"),
    }
}

/// `OMP_DISCORD_STATE_DIR`, else `$XDG_STATE_HOME/omp-discord`, else `~/.local/state/omp-discord`.
///
/// # Errors
///
/// When none of those variables is set.
pub fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = var(env::STATE_DIR) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(state) = var("XDG_STATE_HOME") {
        return Ok(Path::new(&state).join("omp-discord"));
    }
    let home = var("HOME").context("cannot place the state directory: set OMP_DISCORD_STATE_DIR or HOME")?;
    Ok(Path::new(&home).join(".local/state/omp-discord"))
}

/// The socket path from the environment (see `omp_discord_core::paths`).
///
/// # Errors
///
/// When neither `OMP_DISCORD_SOCKET`, `XDG_RUNTIME_DIR`, `XDG_STATE_HOME` nor `HOME` is set.
pub fn default_socket_path() -> anyhow::Result<PathBuf> {
    let (explicit, runtime, state, home) =
        (var(env::SOCKET), var("XDG_RUNTIME_DIR"), var("XDG_STATE_HOME"), var("HOME"));
    socket_path(SocketEnv {
        explicit: explicit.as_deref(),
        runtime_dir: runtime.as_deref(),
        state_home: state.as_deref(),
        home: home.as_deref(),
    })
    .map(PathBuf::from)
    .context("cannot place the socket: set OMP_DISCORD_SOCKET, XDG_RUNTIME_DIR or HOME")
}

fn parse_channel(raw: &str) -> anyhow::Result<Id<ChannelMarker>> {
    raw.trim().parse::<u64>().ok().and_then(Id::new_checked).with_context(|| {
        format!("{} must be a channel id (a number, as Discord's 'Copy Channel ID' gives)", env::CHANNEL_ID)
    })
}

fn read_token() -> anyhow::Result<Option<Token>> {
    if let Some(token) = var(env::TOKEN) {
        return Ok(Some(Token(token.trim().to_owned())));
    }
    if let Some(path) = var(env::TOKEN_FILE) {
        return read_token_file(Path::new(&path)).map(Some);
    }
    if let Some(dir) = var("CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(SYSTEMD_CREDENTIAL);
        if path.exists() {
            // systemd places credentials in a private directory with its own permissions.
            return read_secret(&path).map(Some);
        }
    }
    Ok(None)
}

/// Reads a token file, refusing one that group or others can read.
///
/// # Errors
///
/// When the file is unreadable, empty, or has permissions wider than 0600.
pub fn read_token_file(path: &Path) -> anyhow::Result<Token> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read the token file {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        bail!(
            "the token file {} has mode {:o}, readable by other users; run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    read_secret(path)
}

fn read_secret(path: &Path) -> anyhow::Result<Token> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read the token file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("the token file {} is empty", path.display());
    }
    Ok(Token(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let token = Token("not-a-real-token".into());
        assert_eq!(format!("{token:?}"), "<redacted>");
        let config = Config {
            token: Some(token),
            home_channel: None,
            api: ApiBase { proxy: None, plain_http: false },
            socket: PathBuf::from("/x"),
            state_dir: PathBuf::from("/y"),
            threads: true,
        };
        let debug = format!("{config:?}");
        assert!(debug.contains("token: Some(<redacted>)") && !debug.contains("not-a-real-token"), "{debug}");
    }

    #[test]
    fn api_base_accepts_origins_only() {
        assert_eq!(
            ApiBase::parse(Some("http://127.0.0.1:9/")).unwrap(),
            ApiBase { proxy: Some("127.0.0.1:9".into()), plain_http: true }
        );
        assert_eq!(ApiBase::parse(None).unwrap().proxy, None);
        assert!(ApiBase::parse(Some("127.0.0.1:9")).is_err());
        assert!(ApiBase::parse(Some("http://h/api/v10")).is_err());
    }

    #[test]
    fn world_readable_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "fake-token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_token_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && !err.contains("fake-token"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path).unwrap().expose(), "fake-token");
    }

    #[test]
    fn switches_read_on_and_off() {
        assert!(parse_switch("X", None, true).unwrap());
        assert!(!parse_switch("X", Some(" Off "), true).unwrap());
        assert!(parse_switch("X", Some("1"), false).unwrap());
        assert!(parse_switch("X", Some("maybe"), true).unwrap_err().to_string().contains("X must be on or off"));
    }

    #[test]
    fn channel_id_must_be_a_snowflake() {
        assert!(parse_channel("123").is_ok());
        assert!(parse_channel("0").is_err());
        assert!(parse_channel("#general").is_err());
    }
}
