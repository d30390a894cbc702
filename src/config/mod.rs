//! The sidecar's configuration: `~/.config/omp-discord/config.toml`, with
//! the environment overriding each key (`docs/configuration.md` lists them).
//! Tokens come only from the environment, a 0600 file, or systemd
//! credentials — never from the config file — and are unprintable.
//!
//! # Layout
//!
//! - this module: [`Config`] and how it is loaded, [`ConfigError`],
//!   [`ApiBase`], and the default places of the config file, the socket and
//!   the state directory.
//! - `env`: the `OMP_DISCORD_*` names, and how the environment overrides the file.
//! - `file`: the config file's TOML, checked key by key.
//! - `secret`: [`Token`] and [`Webhook`] (unprintable), and reading them from
//!   the environment, 0600 files and systemd credentials.
//! - `projects`: `[[projects]]` paths expanded, and globbed on disk.

pub mod env;
mod file;
mod projects;
mod secret;

use std::path::{Path, PathBuf};
use std::time::Duration;

use omp_discord_core::inbound::{Directives, RateLimit};
use omp_discord_core::paths::{SocketEnv, socket_path};
use omp_discord_core::projects::Project;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, RoleMarker, UserMarker};

use env::{EnvSource, get, process_env};
use file::FileSettings;
pub use projects::project_dirs;
pub use secret::{SYSTEMD_CREDENTIAL, Token, TokenSource, Webhook, token_from_secret};

/// Why the configuration cannot be used. Each message names the key or file
/// and says what to do; none contains the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file exists but cannot be read.
    #[error("cannot read the config file {}: {source}", path.display())]
    ReadFile {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The config file is not TOML.
    #[error("the config file {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// The parser's explanation, with line and column.
        message: String,
    },
    /// A value has the wrong form.
    #[error("{key} must be {expected}, not {found}")]
    Invalid {
        /// The environment variable, or the file key and file.
        key: String,
        /// The expected form, in words.
        expected: &'static str,
        /// What was there (shortened; long values are described by their length).
        found: String,
    },
    /// The config file holds a token.
    #[error(
        "the config file {} contains a `token` key; tokens do not belong in config files: put the token in a file \
         only you can read (`chmod 600`) and set `token_file = \"/path/to/that/file\"` instead, then delete the \
         `token` line (and consider resetting the token in the Developer Portal)",
        path.display()
    )]
    TokenInFile {
        /// The config file.
        path: PathBuf,
    },
    /// The config file holds a webhook URL (which embeds the webhook's token).
    #[error(
        "the config file {} contains a `webhook_url` key; a webhook URL holds a token and does not belong in config \
         files: put it in a file only you can read (`chmod 600`) and set `webhook_file = \"/path/to/that/file\"`",
        path.display()
    )]
    WebhookInFile {
        /// The config file.
        path: PathBuf,
    },
    /// A webhook URL has the wrong form.
    #[error(
        "{key} is not a Discord webhook URL; copy it again from the channel's Settings → Integrations → Webhooks \
         (it looks like https://discord.com/api/webhooks/<id>/<token>)"
    )]
    WebhookUrl {
        /// The variable or file it came from.
        key: String,
    },
    /// The token file is readable by group or others.
    #[error(
        "the token file {} has mode {mode:o}, readable by other users; run `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    TokenFileOpen {
        /// The token file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The token file cannot be read.
    #[error("cannot read the token file {}: {source}", path.display())]
    TokenFile {
        /// The token file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The token file is empty.
    #[error("the token file {} is empty; put the bot token in it", path.display())]
    EmptyToken {
        /// The token file.
        path: PathBuf,
    },
    /// No directory could be derived for something.
    #[error("cannot place {what}: set {hint}")]
    NoPlace {
        /// What needed a place.
        what: &'static str,
        /// The variables that would give one.
        hint: &'static str,
    },
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
    /// The gateway of a local Discord on plain HTTP (an emulator serves its
    /// gateway on its REST port); `None` for the real Discord, whose gateway
    /// URL comes from `GET /gateway/bot`.
    #[must_use]
    pub fn local_gateway(&self) -> Option<String> {
        self.proxy.as_ref().filter(|_| self.plain_http).map(|proxy| format!("ws://{proxy}"))
    }

    /// Parses `OMP_DISCORD_API_URL` (`http://127.0.0.1:PORT` for the emulator).
    ///
    /// # Errors
    ///
    /// When the URL is not `http://host:port` or `https://host[:port]`.
    pub fn parse(url: Option<&str>) -> Result<Self, ConfigError> {
        parse_api(env::API_URL, url)
    }

    /// The origin requests go to, for messages (`https://discord.com` when not proxied).
    pub fn origin(&self) -> String {
        match &self.proxy {
            Some(proxy) => format!("{}://{proxy}", if self.plain_http { "http" } else { "https" }),
            None => "https://discord.com".to_owned(),
        }
    }
}

/// `url` as an [`ApiBase`]; `key` names where it came from, for the error.
fn parse_api(key: &str, url: Option<&str>) -> Result<ApiBase, ConfigError> {
    let Some(url) = url.filter(|u| !u.is_empty()) else {
        return Ok(ApiBase { proxy: None, plain_http: false });
    };
    let invalid = || invalid(key, "a bare origin such as https://discord.com or http://127.0.0.1:8080", url);
    let url = url.trim_end_matches('/');
    let (plain_http, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else {
        return Err(invalid());
    };
    if rest.is_empty() || rest.contains('/') {
        return Err(invalid());
    }
    if !plain_http && rest == "discord.com" {
        // Discord itself: twilight's default, no proxy.
        return Ok(ApiBase { proxy: None, plain_http: false });
    }
    Ok(ApiBase { proxy: Some(rest.to_owned()), plain_http })
}

/// Everything `omp-discord serve` needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bot token, if one is configured.
    pub token: Option<Token>,
    /// Where the token came from.
    pub token_source: Option<TokenSource>,
    /// The webhook of the webhook-only mode, when configured (used when there is no token).
    pub webhook: Option<Webhook>,
    /// The channel that receives notifications.
    pub home_channel: Option<Id<ChannelMarker>>,
    /// Discord's REST API location.
    pub api: ApiBase,
    /// The gateway's URL, when not Discord's (an emulator's `ws://127.0.0.1:PORT`).
    pub gateway_url: Option<String>,
    /// The Unix socket the shims connect to.
    pub socket: PathBuf,
    /// Where the outbox and other durable state live.
    pub state_dir: PathBuf,
    /// Whether each session gets its own thread (else everything goes to the home channel).
    pub threads: bool,
    /// The log filter from the configuration (`OMP_DISCORD_LOG` or `log`), if any.
    pub log: Option<String>,
    /// Discord users who may drive sessions (reply, approve, `/omp ask`).
    pub allowed_users: Vec<Id<UserMarker>>,
    /// Discord roles whose members may drive sessions.
    pub allowed_roles: Vec<Id<RoleMarker>>,
    /// How long an approval waits for a person before the tool call is denied.
    pub approval_timeout: Duration,
    /// Tool names (a trailing `*` matches a prefix) whose calls wait for a person's Approve.
    pub approve_tools: Vec<String>,
    /// The reply prefix that steers a run and the reply that stops it.
    pub directives: Directives,
    /// The command `/omp ask` runs (with `-p <prompt>` added) to start omp in a project.
    pub ask_command: Vec<String>,
    /// How many replies one person may send per window (`None`: no limit).
    pub inbound_rate_limit: Option<RateLimit>,
    /// The `[report]` table (event filter), as written; `Null` when absent.
    pub report: serde_json::Value,
    /// `[[projects]]`: project directories (globs), each optionally with its own channel.
    pub projects: Vec<Project>,
    /// The config file that was read, when one exists.
    pub file: Option<PathBuf>,
    /// Problems that did not stop loading (unknown keys), already logged.
    pub warnings: Vec<String>,
}

impl Config {
    /// The channel a session working in `cwd` reports to: its project's, else the home channel.
    pub fn channel_for(&self, cwd: &str) -> Option<Id<ChannelMarker>> {
        Project::channel_for(&self.projects, cwd).and_then(Id::new_checked).or(self.home_channel)
    }

    /// Reads the config file and the process environment (which overrides the file).
    ///
    /// # Errors
    ///
    /// See [`Config::load_from`].
    pub fn load() -> Result<Self, ConfigError> {
        Self::load_from(&process_env)
    }

    /// Reads the config file named by `env` and overrides it with `env`.
    /// Unknown file keys are logged as warnings and kept in `warnings`.
    ///
    /// # Errors
    ///
    /// When the file is unreadable or not TOML, holds a token, a value is
    /// malformed, or the token file is unreadable or readable by others.
    pub fn load_from(env: EnvSource<'_>) -> Result<Self, ConfigError> {
        let path = config_path(env);
        let file = match &path {
            Some(path) => FileSettings::read(path)?,
            None => None,
        };
        let path = path.filter(|_| file.is_some());
        let file = file.unwrap_or_default();
        for warning in &file.warnings {
            tracing::warn!("{warning}");
        }
        env::overlay(file, path, env)
    }
}

/// How long an approval waits for a person unless configured.
const DEFAULT_APPROVAL_TIMEOUT: Duration =
    Duration::from_secs(omp_discord_core::settings::DEFAULT_APPROVAL_TIMEOUT_SECS);

/// The form of a reply rate limit, for error messages.
const RATE_LIMIT_FORM: &str = "MESSAGES/SECONDS such as \"10/60\", or \"off\"";

/// A malformed value; the value itself is shown only when short, and redacted.
fn invalid(key: &str, expected: &'static str, found: &str) -> ConfigError {
    // A short value may still be a token pasted into the wrong key: never repeat one.
    let found = omp_discord_core::redact::redact_text(found);
    let found = if found.chars().count() <= 40 {
        format!("{found:?}")
    } else {
        format!("a value of {} characters", found.chars().count())
    };
    ConfigError::Invalid { key: key.to_owned(), expected, found }
}

/// The config file's path: `OMP_DISCORD_CONFIG`, else
/// `$XDG_CONFIG_HOME/omp-discord/config.toml`, else `~/.config/omp-discord/config.toml`.
pub fn config_path(env: EnvSource<'_>) -> Option<PathBuf> {
    if let Some(path) = get(env, env::CONFIG) {
        return Some(PathBuf::from(path));
    }
    let base = match get(env, "XDG_CONFIG_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&get(env, "HOME")?).join(".config"),
    };
    Some(base.join("omp-discord/config.toml"))
}

/// A Discord id written as a decimal number (0 is not an id).
fn parse_id<T>(raw: &str) -> Option<Id<T>> {
    raw.trim().parse::<u64>().ok().and_then(Id::new_checked)
}

/// The log filter: `OMP_DISCORD_LOG`, else the config file's `log`, else `None`.
/// Never fails: a broken config file is reported when the command loads it.
pub fn log_filter() -> Option<String> {
    let env: EnvSource<'_> = &process_env;
    get(env, env::LOG).or_else(|| FileSettings::read(&config_path(env)?).ok().flatten()?.log)
}

/// The state directory from `XDG_STATE_HOME` or `HOME`.
fn state_dir_from_env(env: EnvSource<'_>) -> Result<PathBuf, ConfigError> {
    // The same rule the extension uses to find the spool (core's `paths::state_dir`).
    let (state, home) = (get(env, "XDG_STATE_HOME"), get(env, "HOME"));
    omp_discord_core::paths::state_dir(None, state.as_deref(), home.as_deref())
        .map(PathBuf::from)
        .ok_or(ConfigError::NoPlace { what: "the state directory", hint: "OMP_DISCORD_STATE_DIR or HOME" })
}

/// The socket path: `OMP_DISCORD_SOCKET`, the config file's `socket`, or the
/// default of `omp_discord_core::paths` (which the extension shares).
///
/// # Errors
///
/// When the config file is broken, or no variable gives a place for the socket.
pub fn default_socket_path() -> Result<PathBuf, ConfigError> {
    let env: EnvSource<'_> = &process_env;
    if let Some(socket) = get(env, env::SOCKET) {
        return Ok(PathBuf::from(socket));
    }
    if let Some(socket) = config_path(env).map(|p| FileSettings::read(&p)).transpose()?.flatten().and_then(|f| f.socket)
    {
        return Ok(socket);
    }
    socket_from_env(env)
}

/// The spool directory the next sidecar imports: `spool` in the state
/// directory (`OMP_DISCORD_STATE_DIR`, the config file's `state_dir`, or
/// core's default rule, as `serve` decides it).
///
/// # Errors
///
/// When the config file is broken, or no variable gives a place for the state.
pub fn default_spool_dir() -> Result<PathBuf, ConfigError> {
    let env: EnvSource<'_> = &process_env;
    let state = match get(env, env::STATE_DIR) {
        Some(dir) => PathBuf::from(dir),
        None => match config_path(env).map(|p| FileSettings::read(&p)).transpose()?.flatten().and_then(|f| f.state_dir)
        {
            Some(dir) => dir,
            None => state_dir_from_env(env)?,
        },
    };
    Ok(state.join(omp_discord_core::paths::SPOOL_DIR_NAME))
}

/// The socket path from the environment alone (core's default rule).
fn socket_from_env(env: EnvSource<'_>) -> Result<PathBuf, ConfigError> {
    let (explicit, runtime, state, home) =
        (get(env, env::SOCKET), get(env, "XDG_RUNTIME_DIR"), get(env, "XDG_STATE_HOME"), get(env, "HOME"));
    socket_path(SocketEnv {
        explicit: explicit.as_deref(),
        runtime_dir: runtime.as_deref(),
        state_home: state.as_deref(),
        home: home.as_deref(),
    })
    .map(PathBuf::from)
    .ok_or(ConfigError::NoPlace { what: "the socket", hint: "OMP_DISCORD_SOCKET, XDG_RUNTIME_DIR or HOME" })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// A config file at `dir/config.toml` holding `text`, and an environment pointing at it.
    pub(super) fn setup(dir: &Path, text: &str, vars: &[(&str, &str)]) -> HashMap<String, String> {
        std::fs::write(dir.join("config.toml"), text).unwrap();
        let mut env: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.insert(env::CONFIG.into(), dir.join("config.toml").display().to_string());
        env.insert("HOME".into(), dir.display().to_string());
        env
    }

    pub(super) fn load(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Config::load_from(&|name| env.get(name).cloned())
    }

    pub(super) fn token_file(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join("token");
        std::fs::write(&path, "fake-token\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn assert<T: Send + Sync + std::error::Error>() {}
        assert::<ConfigError>();
    }

    #[test]
    fn api_base_accepts_origins_only() {
        assert_eq!(
            ApiBase::parse(Some("http://127.0.0.1:9/")).unwrap(),
            ApiBase { proxy: Some("127.0.0.1:9".into()), plain_http: true }
        );
        assert_eq!(ApiBase::parse(None).unwrap().proxy, None);
        assert!(ApiBase::parse(Some("127.0.0.1:9")).is_err());
        let err = ApiBase::parse(Some("http://h/api/v10")).unwrap_err().to_string();
        assert!(err.starts_with("OMP_DISCORD_API_URL must be a bare origin"), "{err}");
    }

    #[test]
    fn the_file_is_read_and_the_environment_overrides_it() {
        let dir = tempfile::tempdir().unwrap();
        let token = token_file(dir.path(), 0o600);
        let text = format!(
            r#"
token_file = "{}"
home_channel_id = "111"
api_url = "http://127.0.0.1:9"
socket = "/tmp/from-file.sock"
state_dir = "/tmp/state-from-file"
threads = false
log = "info"
allowed_users = ["201", "202"]
allowed_roles = ["301"]
approval_timeout_secs = 900

[report]
events = ["agent_end"]
"#,
            token.display()
        );
        let env = setup(dir.path(), &text, &[]);
        let config = load(&env).unwrap();
        assert_eq!(config.token.as_ref().unwrap().expose(), "fake-token");
        assert_eq!(config.token_source, Some(TokenSource::File(token.clone())));
        assert_eq!(config.home_channel, Some(Id::new(111)));
        assert_eq!(config.api.proxy.as_deref(), Some("127.0.0.1:9"));
        assert_eq!(config.socket, PathBuf::from("/tmp/from-file.sock"));
        assert_eq!(config.state_dir, PathBuf::from("/tmp/state-from-file"));
        assert!(!config.threads);
        assert_eq!(config.log.as_deref(), Some("info"));
        assert_eq!(config.allowed_users, vec![Id::new(201), Id::new(202)]);
        assert_eq!(config.allowed_roles, vec![Id::new(301)]);
        assert_eq!(config.approval_timeout, Duration::from_secs(900));
        assert_eq!(config.report, serde_json::json!({ "events": ["agent_end"] }));
        assert_eq!(config.file, Some(dir.path().join("config.toml")));
        assert!(config.warnings.is_empty());

        let env = setup(
            dir.path(),
            &text,
            &[
                (env::TOKEN, "env-token"),
                (env::CHANNEL_ID, "112"),
                (env::API_URL, "https://discord.com"),
                (env::SOCKET, "/tmp/env.sock"),
                (env::STATE_DIR, "/tmp/env-state"),
                (env::THREADS, "on"),
                (env::LOG, "debug"),
                (env::ALLOWED_USERS, "203, 204"),
                (env::ALLOWED_ROLES, ""),
                (env::APPROVAL_TIMEOUT, "60"),
            ],
        );
        let config = load(&env).unwrap();
        assert_eq!(config.token.as_ref().unwrap().expose(), "env-token");
        assert_eq!(config.token_source, Some(TokenSource::Env));
        assert_eq!(config.home_channel, Some(Id::new(112)));
        assert_eq!(config.api.proxy, None);
        assert_eq!(config.socket, PathBuf::from("/tmp/env.sock"));
        assert_eq!(config.state_dir, PathBuf::from("/tmp/env-state"));
        assert!(config.threads);
        assert_eq!(config.log.as_deref(), Some("debug"));
        assert_eq!(config.allowed_users, vec![Id::new(203), Id::new(204)]);
        // A blank variable counts as unset.
        assert_eq!(config.allowed_roles, vec![Id::new(301)]);
        assert_eq!(config.approval_timeout, Duration::from_secs(60));
    }

    #[test]
    fn no_file_gives_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let env: HashMap<String, String> = [("HOME".to_owned(), dir.path().display().to_string())].into();
        let config = load(&env).unwrap();
        assert!(config.token.is_none() && config.home_channel.is_none() && config.file.is_none());
        assert!(config.threads && config.allowed_users.is_empty() && config.report.is_null());
        assert_eq!(config.state_dir, dir.path().join(".local/state/omp-discord"));
        assert_eq!(config.approval_timeout, DEFAULT_APPROVAL_TIMEOUT);
    }

    #[test]
    fn the_config_path_honours_xdg_and_the_override() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(config_path(&env(&[("HOME", "/h")])), Some(PathBuf::from("/h/.config/omp-discord/config.toml")));
        assert_eq!(
            config_path(&env(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x")])),
            Some(PathBuf::from("/x/omp-discord/config.toml"))
        );
        assert_eq!(
            config_path(&env(&[("HOME", "/h"), ("XDG_CONFIG_HOME", "/x"), (env::CONFIG, "/c.toml")])),
            Some(PathBuf::from("/c.toml"))
        );
    }
}
