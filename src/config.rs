//! The sidecar's configuration: `~/.config/omp-discord/config.toml`, with
//! the environment overriding each key (`docs/configuration.md` lists them).
//! Tokens come only from the environment, a 0600 file, or systemd
//! credentials — never from the config file — and are unprintable.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use omp_discord_core::inbound::{Directives, RateLimit};
use omp_discord_core::paths::{SocketEnv, socket_path};
use omp_discord_core::projects::Project;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, RoleMarker, UserMarker, WebhookMarker};

/// A Discord bot token. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The token, for the one place that sends it to Discord.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A token someone pasted (setup's prompt), for checking and saving to a 0600 file.
pub fn token_from_secret(secret: String) -> Token {
    Token(secret.trim().to_owned())
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A channel webhook (`https://discord.com/api/webhooks/ID/TOKEN`), for the
/// webhook-only mode: no bot, no gateway. `Debug` never shows its token.
#[derive(Clone)]
pub struct Webhook {
    /// The webhook's id.
    pub id: Id<WebhookMarker>,
    token: Token,
}

impl Webhook {
    /// Parses a webhook URL as Discord shows it (any host, so an emulator's works too).
    ///
    /// # Errors
    ///
    /// When the URL has no `/webhooks/<id>/<token>` part. The error never repeats the URL.
    pub fn parse(key: &str, url: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::WebhookUrl { key: key.to_owned() };
        let (_, rest) = url.trim().split_once("/webhooks/").ok_or_else(invalid)?;
        let mut parts = rest.split(['/', '?', '#']);
        let id = parts.next().and_then(parse_id).ok_or_else(invalid)?;
        let token =
            parts.next().filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)));
        Ok(Self { id, token: Token(token.ok_or_else(invalid)?.to_owned()) })
    }

    /// The webhook's token, for the one place that sends it to Discord.
    pub fn token(&self) -> &str {
        self.token.expose()
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook").field("id", &self.id).field("token", &self.token).finish()
    }
}

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

/// Where the token came from (for `doctor` and `install-service`; never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `OMP_DISCORD_TOKEN`.
    Env,
    /// A token file (`OMP_DISCORD_TOKEN_FILE` or `token_file`).
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/omp-discord-token`, from systemd's `LoadCredential=`.
    SystemdCredential(PathBuf),
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

/// Environment variable names, documented in `docs/configuration.md`.
pub mod env {
    /// The config file's path.
    pub const CONFIG: &str = "OMP_DISCORD_CONFIG";
    /// The bot token itself.
    pub const TOKEN: &str = "OMP_DISCORD_TOKEN";
    /// A file holding the bot token (must not be readable by group or others).
    pub const TOKEN_FILE: &str = "OMP_DISCORD_TOKEN_FILE";
    /// The home channel id.
    pub const CHANNEL_ID: &str = "OMP_DISCORD_CHANNEL_ID";
    /// Discord's API origin (an emulator's, in tests and the demo).
    pub const API_URL: &str = "OMP_DISCORD_API_URL";
    /// Discord's gateway URL (an emulator's, in tests and the demo).
    pub const GATEWAY_URL: &str = "OMP_DISCORD_GATEWAY_URL";
    /// An explicit socket path.
    pub const SOCKET: &str = "OMP_DISCORD_SOCKET";
    /// The directory for durable state (the outbox).
    pub const STATE_DIR: &str = "OMP_DISCORD_STATE_DIR";
    /// `0`/`false`/`off` posts every session into the home channel instead of a thread each.
    pub const THREADS: &str = "OMP_DISCORD_THREADS";
    /// The log filter (tracing `EnvFilter` syntax).
    pub const LOG: &str = "OMP_DISCORD_LOG";
    /// Comma-separated user ids who may drive sessions.
    pub const ALLOWED_USERS: &str = "OMP_DISCORD_ALLOWED_USERS";
    /// Comma-separated role ids whose members may drive sessions.
    pub const ALLOWED_ROLES: &str = "OMP_DISCORD_ALLOWED_ROLES";
    /// Seconds an approval waits for a person.
    pub const APPROVAL_TIMEOUT: &str = "OMP_DISCORD_APPROVAL_TIMEOUT";
    /// Comma-separated tool names whose calls need approval.
    pub const APPROVE_TOOLS: &str = "OMP_DISCORD_APPROVE_TOOLS";
    /// The reply prefix that steers the current run (`off`: none).
    pub const STEER_PREFIX: &str = "OMP_DISCORD_STEER_PREFIX";
    /// The reply that stops the current run (`off`: none).
    pub const ABORT_COMMAND: &str = "OMP_DISCORD_ABORT_COMMAND";
    /// Replies per person and window, `MESSAGES/SECONDS`, or `off`.
    pub const INBOUND_RATE_LIMIT: &str = "OMP_DISCORD_INBOUND_RATE_LIMIT";
    /// A webhook URL, for the webhook-only mode.
    pub const WEBHOOK_URL: &str = "OMP_DISCORD_WEBHOOK_URL";
    /// A file holding the webhook URL (must not be readable by group or others).
    pub const WEBHOOK_FILE: &str = "OMP_DISCORD_WEBHOOK_FILE";
}

/// Name of the systemd credential (`LoadCredential=omp-discord-token:…`).
pub const SYSTEMD_CREDENTIAL: &str = "omp-discord-token";

/// Name of the systemd credential holding a webhook URL (`LoadCredential=omp-discord-webhook:…`).
pub const SYSTEMD_WEBHOOK_CREDENTIAL: &str = "omp-discord-webhook";

/// How long an approval waits for a person unless configured.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration =
    Duration::from_secs(omp_discord_core::settings::DEFAULT_APPROVAL_TIMEOUT_SECS);

/// The keys a config file may hold (besides `[report]`, which is passed on as written).
pub const FILE_KEYS: &[&str] = &[
    "token_file",
    "webhook_file",
    "home_channel_id",
    "api_url",
    "gateway_url",
    "socket",
    "state_dir",
    "threads",
    "log",
    "allowed_users",
    "allowed_roles",
    "approval_timeout_secs",
    "approve_tools",
    "steer_prefix",
    "abort_command",
    "inbound_rate_limit",
    "ask_command",
    "report",
    "projects",
];

/// The keys of one `[[projects]]` entry.
const PROJECT_KEYS: &[&str] = &["path", "channel_id"];

/// A source of environment variables (the process's, or a test's).
pub type EnvSource<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads `name` through `env`, treating blank as unset.
fn get(env: EnvSource<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

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

fn invalid_toml(key: &str, expected: &'static str, found: &toml::Value) -> ConfigError {
    let found = match found {
        toml::Value::String(s) => return invalid(key, expected, s),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "a list".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
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

/// The config file's settings, checked but not yet merged with the environment.
#[derive(Debug, Default)]
struct FileSettings {
    token_file: Option<PathBuf>,
    webhook_file: Option<PathBuf>,
    home_channel: Option<Id<ChannelMarker>>,
    api: Option<ApiBase>,
    gateway_url: Option<String>,
    socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    threads: Option<bool>,
    log: Option<String>,
    allowed_users: Option<Vec<Id<UserMarker>>>,
    allowed_roles: Option<Vec<Id<RoleMarker>>>,
    approval_timeout: Option<Duration>,
    approve_tools: Option<Vec<String>>,
    steer_prefix: Option<String>,
    abort_command: Option<String>,
    inbound_rate_limit: Option<Option<RateLimit>>,
    ask_command: Option<Vec<String>>,
    report: serde_json::Value,
    projects: Vec<ProjectEntry>,
    warnings: Vec<String>,
}

impl FileSettings {
    /// Reads `path`; a missing file is an empty configuration.
    fn read(path: &Path) -> Result<Option<Self>, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text).map(Some),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::ReadFile { path: path.to_owned(), source }),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = text.parse().map_err(|err: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            // The parser's message quotes the offending line, which could hold a token: keep its first line.
            message: err.message().lines().next().unwrap_or_default().to_owned() + &line_of(text, err.span()),
        })?;
        if table.contains_key("token") || table.contains_key("bot_token") {
            return Err(ConfigError::TokenInFile { path: path.to_owned() });
        }
        if table.contains_key("webhook_url") {
            return Err(ConfigError::WebhookInFile { path: path.to_owned() });
        }
        let mut settings = Self::default();
        let file = path.display();
        for (key, value) in &table {
            let name = format!("`{key}` in {file}");
            let text = |expected| match value {
                toml::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                other => Err(invalid_toml(&name, expected, other)),
            };
            match key.as_str() {
                "token_file" => settings.token_file = Some(PathBuf::from(text("a path to the token file")?)),
                "webhook_file" => settings.webhook_file = Some(PathBuf::from(text("a path to the webhook URL file")?)),
                "home_channel_id" => {
                    settings.home_channel = Some(id_from_toml(&name, value, "a channel id such as \"1234567890\"")?);
                }
                "api_url" => {
                    settings.api =
                        Some(parse_api(&name, Some(&text("a bare origin such as \"https://discord.com\"")?))?);
                }
                "gateway_url" => settings.gateway_url = Some(text("a URL such as \"wss://gateway.discord.gg\"")?),
                "socket" => settings.socket = Some(PathBuf::from(text("a path")?)),
                "state_dir" => settings.state_dir = Some(PathBuf::from(text("a path")?)),
                "threads" => match value {
                    toml::Value::Boolean(on) => settings.threads = Some(*on),
                    other => return Err(invalid_toml(&name, "true or false", other)),
                },
                "log" => settings.log = Some(text("a log filter such as \"warn\" or \"omp_discord=debug\"")?),
                "allowed_users" => settings.allowed_users = Some(ids_from_toml(&name, value)?),
                "allowed_roles" => settings.allowed_roles = Some(ids_from_toml(&name, value)?),
                "approval_timeout_secs" => match value {
                    toml::Value::Integer(secs) if *secs > 0 => {
                        settings.approval_timeout = Some(Duration::from_secs(secs.unsigned_abs()));
                    }
                    other => return Err(invalid_toml(&name, "a positive number of seconds", other)),
                },
                "approve_tools" => match value {
                    toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => {
                        settings.approve_tools =
                            Some(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
                    }
                    other => return Err(invalid_toml(&name, "a list of tool names such as [\"bash\"]", other)),
                },
                "steer_prefix" | "abort_command" => {
                    let toml::Value::String(raw) = value else {
                        return Err(invalid_toml(
                            &name,
                            "a string such as \"!\" (\"\" or \"off\" turns it off)",
                            value,
                        ));
                    };
                    let directive = Some(directive_value(raw));
                    if key == "steer_prefix" {
                        settings.steer_prefix = directive;
                    } else {
                        settings.abort_command = directive;
                    }
                }
                "ask_command" => match value {
                    toml::Value::Array(items)
                        if !items.is_empty() && items.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) =>
                    {
                        settings.ask_command =
                            Some(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
                    }
                    other => {
                        return Err(invalid_toml(&name, "a command as a list of arguments, such as [\"omp\"]", other));
                    }
                },
                "inbound_rate_limit" => {
                    settings.inbound_rate_limit = Some(match value {
                        toml::Value::String(raw) => {
                            RateLimit::parse(raw).map_err(|_| invalid_toml(&name, RATE_LIMIT_FORM, value))?
                        }
                        other => return Err(invalid_toml(&name, RATE_LIMIT_FORM, other)),
                    });
                }
                "report" => match value {
                    toml::Value::Table(_) => {
                        settings.report = serde_json::to_value(value).map_err(|_| {
                            invalid_toml(&name, "a table without dates (dates cannot be passed on)", value)
                        })?;
                    }
                    other => return Err(invalid_toml(&name, "a table (`[report]`)", other)),
                },
                "projects" => settings.projects = projects_from_toml(&name, value, &mut settings.warnings)?,
                unknown => {
                    // A pasted token can end up as a key; the warning is shown by `status`.
                    let unknown = &*omp_discord_core::redact::redact_text(unknown);
                    let hint = closest(unknown).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
                    settings.warnings.push(format!("unknown key `{unknown}` in {file} is ignored{hint}"));
                }
            }
        }
        Ok(settings)
    }
}

/// ` (line N)` for an error span, or nothing.
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|span| format!(" (line {})", text[..span.start.min(text.len())].lines().count().max(1)))
        .unwrap_or_default()
}

/// The known key a typo most likely meant.
fn closest(unknown: &str) -> Option<&'static str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let current = row[j + 1];
                row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
                previous = current;
            }
        }
        row[b.len()]
    };
    FILE_KEYS.iter().map(|k| (distance(unknown, k), *k)).filter(|(d, _)| *d <= 3).min().map(|(_, k)| k)
}

/// The existing directories a `[[projects]]` path names (its glob expanded), sorted.
pub fn project_dirs(project: &Project) -> Vec<PathBuf> {
    glob::glob(project.path()).map(|paths| paths.flatten().filter(|p| p.is_dir()).collect()).unwrap_or_default()
}

/// One `[[projects]]` entry as written: the path (maybe `~/…`) and the channel.
type ProjectEntry = (String, Option<Id<ChannelMarker>>);

/// Reads `[[projects]]`: a list of tables with a `path` and an optional `channel_id`.
fn projects_from_toml(
    key: &str,
    value: &toml::Value,
    warnings: &mut Vec<String>,
) -> Result<Vec<ProjectEntry>, ConfigError> {
    const EXPECTED: &str = "a list of tables such as [[projects]] path = \"~/src/*\" channel_id = \"123\"";
    let toml::Value::Array(items) = value else { return Err(invalid_toml(key, EXPECTED, value)) };
    let mut projects = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let toml::Value::Table(table) = item else { return Err(invalid_toml(key, EXPECTED, item)) };
        let entry = format!("{key} (entry {})", n + 1);
        let path = match table.get("path") {
            Some(toml::Value::String(path)) if !path.trim().is_empty() => path.trim().to_owned(),
            Some(other) => return Err(invalid_toml(&entry, "`path`: a directory or glob such as \"~/src/*\"", other)),
            None => return Err(invalid(&entry, "a `path` such as \"~/src/*\"", "no path")),
        };
        let channel = match table.get("channel_id") {
            Some(value) => Some(id_from_toml(&entry, value, "`channel_id`: a channel id such as \"1234567890\"")?),
            None => None,
        };
        for unknown in table.keys().filter(|k| !PROJECT_KEYS.contains(&k.as_str())) {
            let unknown = omp_discord_core::redact::redact_text(unknown);
            warnings.push(format!("unknown key `{unknown}` in {entry} is ignored (known: path, channel_id)"));
        }
        projects.push((path, channel));
    }
    Ok(projects)
}

/// Turns the configured project paths into matchers: `~/` becomes `$HOME/`;
/// other paths must be absolute.
fn projects_from(configured: Vec<ProjectEntry>, env: EnvSource<'_>) -> Result<Vec<Project>, ConfigError> {
    const EXPECTED: &str = "an absolute directory or glob, or one starting with ~/";
    configured
        .into_iter()
        .map(|(path, channel)| {
            let key = "`path` in [[projects]]";
            let expanded = match path.strip_prefix("~/") {
                Some(rest) => {
                    let home = get(env, "HOME")
                        .ok_or(ConfigError::NoPlace { what: "a project path starting with ~/", hint: "HOME" })?;
                    format!("{}/{rest}", home.trim_end_matches('/'))
                }
                None if path.starts_with('/') => path.clone(),
                None => return Err(invalid(key, EXPECTED, &path)),
            };
            Project::new(&expanded, channel.map(Id::get)).map_err(|err| ConfigError::Invalid {
                key: key.to_owned(),
                expected: "a valid glob",
                found: format!("{path:?} ({err})"),
            })
        })
        .collect()
}

fn parse_id<T>(raw: &str) -> Option<Id<T>> {
    raw.trim().parse::<u64>().ok().and_then(Id::new_checked)
}

fn id_from_toml<T>(key: &str, value: &toml::Value, expected: &'static str) -> Result<Id<T>, ConfigError> {
    let id = match value {
        toml::Value::String(s) => parse_id(s),
        toml::Value::Integer(n) => u64::try_from(*n).ok().and_then(Id::new_checked),
        _ => None,
    };
    id.ok_or_else(|| invalid_toml(key, expected, value))
}

fn ids_from_toml<T>(key: &str, value: &toml::Value) -> Result<Vec<Id<T>>, ConfigError> {
    const EXPECTED: &str = "a list of Discord ids as strings, such as [\"1234567890\"]";
    match value {
        toml::Value::Array(items) => items.iter().map(|item| id_from_toml(key, item, EXPECTED)).collect(),
        other => Err(invalid_toml(key, EXPECTED, other)),
    }
}

fn ids_from_env<T>(key: &str, raw: &str) -> Result<Vec<Id<T>>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse_id(item).ok_or_else(|| invalid(key, "a comma-separated list of Discord ids", item)))
        .collect()
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

    /// The same as [`Config::load`], under the name existing callers use.
    ///
    /// # Errors
    ///
    /// See [`Config::load_from`].
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load()
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
        let exists = file.is_some();
        let file = file.unwrap_or_default();
        for warning in &file.warnings {
            tracing::warn!("{warning}");
        }
        let (token, token_source) = match read_token(env, file.token_file.as_deref())? {
            Some((token, source)) => (Some(token), Some(source)),
            None => (None, None),
        };
        let webhook = read_webhook(env, file.webhook_file.as_deref())?;
        let home_channel = match get(env, env::CHANNEL_ID) {
            Some(raw) => Some(
                parse_id(&raw)
                    .ok_or_else(|| invalid(env::CHANNEL_ID, "a channel id (Discord's 'Copy Channel ID')", &raw))?,
            ),
            None => file.home_channel,
        };
        let api = match get(env, env::API_URL) {
            Some(raw) => ApiBase::parse(Some(&raw))?,
            None => file.api.unwrap_or(ApiBase { proxy: None, plain_http: false }),
        };
        let threads = match get(env, env::THREADS) {
            Some(raw) => parse_switch(env::THREADS, &raw)?,
            None => file.threads.unwrap_or(true),
        };
        let allowed_users = match get(env, env::ALLOWED_USERS) {
            Some(raw) => ids_from_env(env::ALLOWED_USERS, &raw)?,
            None => file.allowed_users.unwrap_or_default(),
        };
        let allowed_roles = match get(env, env::ALLOWED_ROLES) {
            Some(raw) => ids_from_env(env::ALLOWED_ROLES, &raw)?,
            None => file.allowed_roles.unwrap_or_default(),
        };
        let approval_timeout = match get(env, env::APPROVAL_TIMEOUT) {
            Some(raw) => match raw.trim().parse::<u64>() {
                Ok(secs) if secs > 0 => Duration::from_secs(secs),
                _ => return Err(invalid(env::APPROVAL_TIMEOUT, "a positive number of seconds", &raw)),
            },
            None => file.approval_timeout.unwrap_or(DEFAULT_APPROVAL_TIMEOUT),
        };
        let approve_tools = match get(env, env::APPROVE_TOOLS) {
            Some(raw) => raw.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect(),
            None => file.approve_tools.unwrap_or_default(),
        };
        let defaults = Directives::default();
        let directives = Directives {
            steer_prefix: get(env, env::STEER_PREFIX)
                .map(|raw| directive_value(&raw))
                .or(file.steer_prefix)
                .unwrap_or(defaults.steer_prefix),
            abort_command: get(env, env::ABORT_COMMAND)
                .map(|raw| directive_value(&raw))
                .or(file.abort_command)
                .unwrap_or(defaults.abort_command),
        };
        let inbound_rate_limit = match get(env, env::INBOUND_RATE_LIMIT) {
            Some(raw) => RateLimit::parse(&raw).map_err(|_| invalid(env::INBOUND_RATE_LIMIT, RATE_LIMIT_FORM, &raw))?,
            None => file.inbound_rate_limit.unwrap_or(Some(RateLimit::default())),
        };
        Ok(Self {
            token,
            token_source,
            webhook,
            home_channel,
            api,
            gateway_url: get(env, env::GATEWAY_URL).or(file.gateway_url),
            socket: match get(env, env::SOCKET) {
                Some(socket) => PathBuf::from(socket),
                None => match file.socket {
                    Some(socket) => socket,
                    None => socket_from_env(env)?,
                },
            },
            state_dir: match get(env, env::STATE_DIR) {
                Some(dir) => PathBuf::from(dir),
                None => match file.state_dir {
                    Some(dir) => dir,
                    None => state_dir_from_env(env)?,
                },
            },
            threads,
            log: get(env, env::LOG).or(file.log),
            allowed_users,
            allowed_roles,
            approval_timeout,
            approve_tools,
            directives,
            ask_command: file.ask_command.unwrap_or_else(|| vec!["omp".to_owned()]),
            inbound_rate_limit,
            report: file.report,
            projects: projects_from(file.projects, env)?,
            file: path.filter(|_| exists),
            warnings: file.warnings,
        })
    }
}

const RATE_LIMIT_FORM: &str = "MESSAGES/SECONDS such as \"10/60\", or \"off\"";

/// A steer prefix or stop command as configured: `off` (or nothing) turns it off.
fn directive_value(raw: &str) -> String {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("off") { String::new() } else { raw.to_owned() }
}

fn parse_switch(name: &str, raw: &str) -> Result<bool, ConfigError> {
    // The same words the extension reads its switches with.
    omp_discord_core::settings::parse_switch(raw).ok_or_else(|| invalid(name, "on or off", raw))
}

/// The log filter: `OMP_DISCORD_LOG`, else the config file's `log`, else `None`.
/// Never fails: a broken config file is reported when the command loads it.
pub fn log_filter() -> Option<String> {
    let env: EnvSource<'_> = &process_env;
    get(env, env::LOG).or_else(|| FileSettings::read(&config_path(env)?).ok().flatten()?.log)
}

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

/// The token and where it came from: `OMP_DISCORD_TOKEN`, `OMP_DISCORD_TOKEN_FILE`,
/// a systemd credential, then the config file's `token_file`.
fn read_token(env: EnvSource<'_>, file_token_file: Option<&Path>) -> Result<Option<(Token, TokenSource)>, ConfigError> {
    if let Some(token) = get(env, env::TOKEN) {
        return Ok(Some((Token(token.trim().to_owned()), TokenSource::Env)));
    }
    if let Some(path) = get(env, env::TOKEN_FILE) {
        let path = PathBuf::from(path);
        return Ok(Some((read_token_file(&path)?, TokenSource::File(path))));
    }
    if let Some(dir) = get(env, "CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(SYSTEMD_CREDENTIAL);
        if path.exists() {
            // systemd places credentials in a private directory with its own permissions.
            return Ok(Some((read_secret(&path)?, TokenSource::SystemdCredential(path))));
        }
    }
    if let Some(path) = file_token_file {
        return Ok(Some((read_token_file(path)?, TokenSource::File(path.to_owned()))));
    }
    Ok(None)
}

/// The webhook URL: `OMP_DISCORD_WEBHOOK_URL`, `OMP_DISCORD_WEBHOOK_FILE`, a
/// systemd credential, then the config file's `webhook_file`.
fn read_webhook(env: EnvSource<'_>, file_webhook_file: Option<&Path>) -> Result<Option<Webhook>, ConfigError> {
    if let Some(url) = get(env, env::WEBHOOK_URL) {
        return Webhook::parse(env::WEBHOOK_URL, &url).map(Some);
    }
    let from_file = |path: &Path, secret: Token| Webhook::parse(&path.display().to_string(), secret.expose());
    if let Some(path) = get(env, env::WEBHOOK_FILE) {
        let path = PathBuf::from(path);
        return from_file(&path, read_token_file(&path)?).map(Some);
    }
    if let Some(dir) = get(env, "CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(SYSTEMD_WEBHOOK_CREDENTIAL);
        if path.exists() {
            return from_file(&path, read_secret(&path)?).map(Some);
        }
    }
    file_webhook_file.map(|path| from_file(path, read_token_file(path)?)).transpose()
}

/// Reads a token file, refusing one that group or others can read.
///
/// # Errors
///
/// When the file is unreadable, empty, or has permissions wider than 0600.
pub fn read_token_file(path: &Path) -> Result<Token, ConfigError> {
    let mode = std::fs::metadata(path)
        .map_err(|source| ConfigError::TokenFile { path: path.to_owned(), source })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::TokenFileOpen { path: path.to_owned(), mode: mode & 0o777 });
    }
    read_secret(path)
}

fn read_secret(path: &Path) -> Result<Token, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile { path: path.to_owned(), source })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken { path: path.to_owned() });
    }
    Ok(Token(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A config file at `dir/config.toml` holding `text`, and an environment pointing at it.
    fn setup(dir: &Path, text: &str, vars: &[(&str, &str)]) -> HashMap<String, String> {
        std::fs::write(dir.join("config.toml"), text).unwrap();
        let mut env: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        env.insert(env::CONFIG.into(), dir.join("config.toml").display().to_string());
        env.insert("HOME".into(), dir.display().to_string());
        env
    }

    fn load(env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        Config::load_from(&|name| env.get(name).cloned())
    }

    fn token_file(dir: &Path, mode: u32) -> PathBuf {
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
    fn projects_expand_home_and_route_sessions_to_their_channel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/app")).unwrap();
        std::fs::create_dir_all(dir.path().join("src/blog")).unwrap();
        let text = r#"
home_channel_id = "111"

[[projects]]
path = "~/src/app/"
channel_id = "222"

[[projects]]
path = "~/src/*"
colour = "red"
"#;
        let env = setup(dir.path(), text, &[]);
        let config = load(&env).unwrap();
        let home = dir.path().display().to_string();
        let paths: Vec<&str> = config.projects.iter().map(Project::path).collect();
        assert_eq!(paths, [format!("{home}/src/app"), format!("{home}/src/*")]);
        assert_eq!(config.channel_for(&format!("{home}/src/app/crates")), Some(Id::new(222)));
        assert_eq!(config.channel_for(&format!("{home}/src/blog")), Some(Id::new(111)), "no channel: the home one");
        assert_eq!(config.channel_for("/elsewhere"), Some(Id::new(111)));
        assert_eq!(project_dirs(&config.projects[1]), [dir.path().join("src/app"), dir.path().join("src/blog")]);
        assert!(
            config.warnings.iter().any(|w| w.contains("unknown key `colour` in `projects`")),
            "{:?}",
            config.warnings
        );
    }

    /// The first-column keys of the table after `heading` in docs/configuration.md.
    fn documented_keys(heading: &str) -> Vec<String> {
        let docs = include_str!("../docs/configuration.md");
        let table = &docs[docs.find(heading).expect("the heading")..];
        table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|row| row.strip_prefix("| `")?.split('`').next())
            .map(|key| key.trim_matches(['[', ']']).to_owned())
            .collect()
    }

    #[test]
    fn the_documented_keys_are_the_parsed_keys() {
        let mut documented = documented_keys("## Keys");
        documented.sort();
        let mut parsed: Vec<String> = FILE_KEYS.iter().map(|k| (*k).to_owned()).collect();
        parsed.sort();
        assert_eq!(documented, parsed, "docs/configuration.md's key table and FILE_KEYS differ");
        assert_eq!(documented_keys("## Projects and several servers\n"), PROJECT_KEYS);
    }

    #[test]
    fn broken_projects_say_what_to_write() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("projects = \"~/src\"", "a list of tables"),
            ("[[projects]]\nchannel_id = \"1\"", "a `path`"),
            ("[[projects]]\npath = \"src/*\"", "an absolute directory or glob"),
            ("[[projects]]\npath = \"/src/[x\"", "a valid glob"),
            ("[[projects]]\npath = \"/src\"\nchannel_id = \"#general\"", "a channel id"),
        ] {
            let env = setup(dir.path(), text, &[]);
            let err = load(&env).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn token_debug_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let env = setup(dir.path(), "", &[(env::TOKEN, "not-a-real-token")]);
        let config = load(&env).unwrap();
        assert_eq!(format!("{:?}", config.token.as_ref().unwrap()), "<redacted>");
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
    fn token_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = token_file(dir.path(), 0o600);
        let credentials = dir.path().join("credentials");
        std::fs::create_dir(&credentials).unwrap();
        std::fs::write(credentials.join(SYSTEMD_CREDENTIAL), "credential-token\n").unwrap();
        let in_file = format!("token_file = \"{}\"", file.display());
        let credential = ("CREDENTIALS_DIRECTORY", credentials.to_str().unwrap());
        // The unit's credential beats the config file's token_file ...
        let config = load(&setup(dir.path(), &in_file, &[credential])).unwrap();
        assert_eq!(config.token.unwrap().expose(), "credential-token");
        assert!(matches!(config.token_source, Some(TokenSource::SystemdCredential(_))));
        // ... and the environment beats both.
        let env = setup(dir.path(), &in_file, &[credential, (env::TOKEN_FILE, file.to_str().unwrap())]);
        assert_eq!(load(&env).unwrap().token_source, Some(TokenSource::File(file.clone())));
        let env = setup(dir.path(), &in_file, &[credential, (env::TOKEN, "env-token")]);
        assert_eq!(load(&env).unwrap().token.unwrap().expose(), "env-token");
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

    #[test]
    fn unknown_keys_are_warnings_that_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let env = setup(dir.path(), "home_chanel_id = \"1\"\ncolour = \"red\"\n", &[]);
        let config = load(&env).unwrap();
        assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
        let all = config.warnings.join("\n");
        assert!(
            all.contains("unknown key `home_chanel_id`") && all.contains("did you mean `home_channel_id`?"),
            "{all}"
        );
        assert!(all.contains("unknown key `colour`"), "{all}");
        assert_eq!(config.home_channel, None);
    }

    #[test]
    fn malformed_values_name_the_key_and_the_expected_form() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("home_channel_id = \"#general\"", "`home_channel_id` in", "a channel id"),
            ("threads = \"maybe\"", "`threads` in", "true or false"),
            ("allowed_users = \"123\"", "`allowed_users` in", "a list of Discord ids"),
            ("allowed_roles = [\"x\"]", "`allowed_roles` in", "a list of Discord ids"),
            ("api_url = \"discord.com\"", "`api_url` in", "a bare origin"),
            ("approval_timeout_secs = 0", "`approval_timeout_secs` in", "a positive number of seconds"),
            ("report = 3", "`report` in", "a table"),
            ("threads = ", "is not valid TOML", "line 1"),
        ];
        for (text, key, expected) in cases {
            let env = setup(dir.path(), text, &[]);
            let err = load(&env).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(expected), "{text}: {err}");
        }
        let env = setup(dir.path(), "", &[(env::THREADS, "maybe")]);
        assert_eq!(load(&env).unwrap_err().to_string(), "OMP_DISCORD_THREADS must be on or off, not \"maybe\"");
        let env = setup(dir.path(), "", &[(env::ALLOWED_USERS, "1,bob")]);
        let err = load(&env).unwrap_err().to_string();
        assert!(err.starts_with("OMP_DISCORD_ALLOWED_USERS must be a comma-separated list"), "{err}");
        let env = setup(dir.path(), "", &[(env::CHANNEL_ID, "0")]);
        assert!(load(&env).unwrap_err().to_string().starts_with("OMP_DISCORD_CHANNEL_ID must be a channel id"));
    }

    #[test]
    fn reply_directives_and_the_rate_limit_come_from_the_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(&setup(dir.path(), "", &[])).unwrap();
        assert_eq!(config.directives, Directives::default());
        assert_eq!(config.inbound_rate_limit, Some(RateLimit { messages: 10, per_secs: 60 }));
        let text = "steer_prefix = \">>\"\nabort_command = \"off\"\ninbound_rate_limit = \"3/5\"\n";
        let config = load(&setup(dir.path(), text, &[])).unwrap();
        assert_eq!(config.directives, Directives { steer_prefix: ">>".into(), abort_command: String::new() });
        assert_eq!(config.inbound_rate_limit, Some(RateLimit { messages: 3, per_secs: 5 }));
        let env = [(env::STEER_PREFIX, "off"), (env::ABORT_COMMAND, "!halt"), (env::INBOUND_RATE_LIMIT, "off")];
        let config = load(&setup(dir.path(), text, &env)).unwrap();
        assert_eq!(config.directives, Directives { steer_prefix: String::new(), abort_command: "!halt".into() });
        assert_eq!(config.inbound_rate_limit, None);
        let err = load(&setup(dir.path(), "inbound_rate_limit = \"fast\"", &[])).unwrap_err().to_string();
        assert!(err.contains("`inbound_rate_limit` in") && err.contains("MESSAGES/SECONDS"), "{err}");
        let err = load(&setup(dir.path(), "", &[(env::INBOUND_RATE_LIMIT, "0/60")])).unwrap_err().to_string();
        assert!(err.starts_with("OMP_DISCORD_INBOUND_RATE_LIMIT must be MESSAGES/SECONDS"), "{err}");
    }

    #[test]
    fn a_token_in_the_file_is_refused_without_being_repeated() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["token = \"sekrit-token-value\"", "bot_token = \"sekrit-token-value\""] {
            let env = setup(dir.path(), text, &[]);
            let err = load(&env).unwrap_err();
            assert!(matches!(err, ConfigError::TokenInFile { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("token_file = ") && !text.contains("sekrit"), "{text}");
        }
        // A syntax error on the token's line does not quote it either.
        let env = setup(dir.path(), "token_file = \"/x\"\ntoken = sekrit-token-value\n", &[]);
        let err = load(&env).unwrap_err().to_string();
        assert!(err.contains("line 2") && !err.contains("sekrit"), "{err}");
    }

    #[test]
    fn world_readable_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(dir.path(), 0o644);
        let err = read_token_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && !err.contains("fake-token"), "{err}");
        // Through the config file too.
        let env = setup(dir.path(), &format!("token_file = \"{}\"", path.display()), &[]);
        assert!(matches!(load(&env).unwrap_err(), ConfigError::TokenFileOpen { mode: 0o644, .. }));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path).unwrap().expose(), "fake-token");
    }

    #[test]
    fn switches_read_on_and_off() {
        assert!(!parse_switch("X", " Off ").unwrap());
        assert!(parse_switch("X", "1").unwrap());
        assert!(parse_switch("X", "maybe").unwrap_err().to_string().contains("X must be on or off"));
    }

    #[test]
    fn a_webhook_comes_from_env_or_a_private_file_and_never_prints_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let url = "https://discord.com/api/webhooks/123456789/fake-webhook_token?wait=true";
        let env = setup(dir.path(), "", &[(env::WEBHOOK_URL, url)]);
        let webhook = load(&env).unwrap().webhook.expect("a webhook");
        assert_eq!((webhook.id.get(), webhook.token()), (123_456_789, "fake-webhook_token"));
        assert!(!format!("{webhook:?}").contains("fake-webhook"), "{webhook:?}");

        let file = dir.path().join("webhook");
        std::fs::write(&file, format!("{url}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = setup(dir.path(), &format!("webhook_file = {:?}", file.display().to_string()), &[]);
        assert_eq!(load(&env).unwrap().webhook.unwrap().id.get(), 123_456_789);

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load(&env).unwrap_err(), ConfigError::TokenFileOpen { .. }));
    }

    #[test]
    fn a_bad_or_inline_webhook_is_refused_without_being_repeated() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["https://discord.com/api/channels/1/fake-secret", "https://discord.com/api/webhooks/x/fake-secret"]
        {
            let env = setup(dir.path(), "", &[(env::WEBHOOK_URL, bad)]);
            let err = load(&env).unwrap_err().to_string();
            assert!(
                err.contains("OMP_DISCORD_WEBHOOK_URL is not a Discord webhook URL") && !err.contains("fake-secret")
            );
        }
        let env = setup(dir.path(), "webhook_url = \"https://discord.com/api/webhooks/1/fake-secret\"", &[]);
        let err = load(&env).unwrap_err();
        assert!(matches!(err, ConfigError::WebhookInFile { .. }) && !err.to_string().contains("fake-secret"));
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Fake tokens of the shapes people paste: a GitHub token (exactly 40
    /// characters) and a Discord bot token.
    const TOKENS: &[&str] = &[
        "ghp_FAKEq8ZK2mVx0pLr7TyN4bWs1Ue6Ih3Co5Ad", // fake, made-up token
        "MTEwMDAwMDAwMDAwMDAwMTAw.FAKEaa.q8ZK2mVx0pLr7TyN4bWs1Ue6Ih3Co5AdQ9", // fake, made-up token
    ];

    fn toml_text() -> impl Strategy<Value = String> {
        let token = prop::sample::select(TOKENS);
        let key = prop::sample::select(vec![
            "home_channel_id",
            "token_file",
            "api_url",
            "gateway_url",
            "threads",
            "log",
            "allowed_users",
            "allowed_roles",
            "approval_timeout_secs",
            "approve_tools",
            "report",
            "socket",
        ]);
        let line = prop_oneof![
            (key.clone(), token.clone()).prop_map(|(k, t)| format!("{k} = \"{t}\"\n")),
            (key.clone(), token.clone()).prop_map(|(k, t)| format!("{k} = {t}\n")),
            (key.clone(), token.clone()).prop_map(|(k, t)| format!("{k} = [\"{t}\", 1]\n")),
            (key.clone(), token.clone()).prop_map(|(k, t)| format!("[{k}]\nx = \"{t}\"\n")),
            token.clone().prop_map(|t| format!("{t}\n")),
            token.clone().prop_map(|t| format!("\"{t}\" = 1\n")),
            token.clone().prop_map(|t| format!("{t} = \"x\"\n")),
            token.prop_map(|t| format!("log = \"{t}\n")),
            (key, "[ -~]{0,20}").prop_map(|(k, v)| format!("{k} = {v}\n")),
            "[ -~\\n]{0,40}",
            any::<String>(),
        ];
        prop::collection::vec(line, 0..6).prop_map(|lines| lines.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text parses or fails with an error; neither the error nor a
        /// warning repeats a token from the file.
        #[test]
        fn no_panic_and_no_token_in_errors(text in toml_text()) {
            let path = Path::new("/cfg/config.toml");
            let shown = match FileSettings::parse(path, &text) {
                Ok(settings) => settings.warnings.join("\n"),
                Err(err) => err.to_string(),
            };
            for token in TOKENS {
                // A Discord token's first part is the bot's public id; its last part is the secret.
                let secret = token.rsplit('.').next().unwrap_or(token);
                prop_assert!(!shown.contains(secret), "{shown:?} shows a token from {text:?}");
            }
        }
    }
}
