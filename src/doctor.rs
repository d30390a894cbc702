//! `omp-discord doctor`: checks everything a working setup needs, and says
//! for each problem what to do about it. Each check is `ok`, `warn` (works,
//! but something is off) or `FAIL` (something will not work).

use std::fmt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use omp_discord_core::protocol::{
    ClientFrame, Hello, PROTOCOL_VERSION, ServerFrame, decode_server_frame, encode_frame,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use twilight_http::error::ErrorType;
use twilight_http::request::Request;
use twilight_http::routing::Route;
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;

use crate::config::{ApiBase, Config, ConfigError, Token};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but something is off.
    Warn,
    /// Will not work.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked (a short word).
    pub name: &'static str,
    /// The verdict.
    pub level: Level,
    /// What was found, in one line.
    pub detail: String,
    /// What to do, for a warning or failure.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, level: Level::Ok, detail: detail.into(), fix: None }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, level: Level::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, level: Level::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        write!(f, "{level:<5} {:<13} {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n{:<19} fix: {fix}", "")?;
        }
        Ok(())
    }
}

/// Every check, in order.
#[derive(Debug, Default)]
pub struct Report {
    /// The findings.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether any check failed (the command then exits non-zero).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.level == Level::Fail)
    }
}

/// Where doctor looks for things outside its own configuration.
#[derive(Debug, Clone)]
pub struct Environment {
    /// `PATH`, to find `omp`.
    pub path: Option<String>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `PI_CODING_AGENT_DIR` (OMP's agent directory override).
    pub omp_agent_dir: Option<PathBuf>,
    /// `PI_CONFIG_DIR` (OMP's config directory name under HOME, default `.omp`).
    pub omp_config_dir: Option<String>,
    /// `DISCORD_WEBHOOK_URL` is set (the webhook-only mode needs no bot token).
    pub webhook_mode: bool,
}

impl Environment {
    /// This process's environment.
    pub fn current() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            path: var("PATH"),
            home: var("HOME").map(PathBuf::from),
            omp_agent_dir: var("PI_CODING_AGENT_DIR").map(PathBuf::from),
            omp_config_dir: var("PI_CONFIG_DIR"),
            webhook_mode: var("DISCORD_WEBHOOK_URL").is_some(),
        }
    }
}

/// Runs every check. `config` is the result of loading the configuration.
pub async fn run(config: Result<Config, ConfigError>, env: &Environment) -> Report {
    let mut report = Report::default();
    let config = match config {
        Ok(config) => {
            report.checks.push(config_check(&config));
            config
        }
        Err(err) => {
            report.checks.push(Check::fail(
                "config",
                err.to_string(),
                "correct the value named above (docs/configuration.md lists every key), then run doctor again",
            ));
            // Without a configuration the remaining checks would only repeat this failure.
            return report;
        }
    };
    report.checks.extend(discord_checks(&config, env).await);
    report.checks.extend(socket_checks(&config.socket).await);
    report.checks.push(plugin_check(env).await);
    report.checks.push(timeout_check(&config, env));
    report
}

fn config_check(config: &Config) -> Check {
    let mut source = match &config.file {
        Some(path) => format!("{} read", path.display()),
        None => "no config file; settings come from the environment".to_owned(),
    };
    if let Some(filter) = &config.log {
        source.push_str(&format!(", log filter {filter:?}"));
    }
    if let Some(report) = config.report.as_object() {
        source.push_str(&format!(", [report] with {} keys", report.len()));
    }
    if config.warnings.is_empty() {
        Check::ok("config", source)
    } else {
        Check::warn(
            "config",
            format!("{source}; {}", config.warnings.join("; ")),
            "rename or remove the unknown keys (docs/configuration.md lists every key)",
        )
    }
}

/// The permissions the bot needs in the home channel, with their names.
const NEEDED: &[(u64, &str)] = &[
    (1 << 10, "View Channel"),
    (1 << 11, "Send Messages"),
    (1 << 14, "Embed Links"),
    (1 << 16, "Read Message History"),
];
/// Needed as well when sessions get threads.
const NEEDED_FOR_THREADS: &[(u64, &str)] = &[(1 << 35, "Create Public Threads"), (1 << 38, "Send Messages in Threads")];
/// What a forum needs instead, named as its settings name them: opening a post
/// takes Send Messages ("Create Posts"; Create Public Threads is ignored),
/// posting in it Send Messages in Threads ("Send Messages in Posts").
const NEEDED_IN_FORUM: &[(u64, &str)] = &[
    (1 << 10, "View Channel"),
    (1 << 11, "Create Posts"),
    (1 << 38, "Send Messages in Posts"),
    (1 << 14, "Embed Links"),
    (1 << 16, "Read Message History"),
];
/// A forum whose posts need a tag.
const REQUIRE_TAG: u64 = 1 << 4;
const ADMINISTRATOR: u64 = 1 << 3;

/// A Discord answer that was not a success.
pub(crate) enum Answer {
    Refused { status: u16, code: u64, message: String },
    Unauthorized,
    Unreachable(String),
}

impl fmt::Display for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Refused { status, code, message } => write!(f, "HTTP {status}, code {code}: {message}"),
            Self::Unauthorized => f.write_str("HTTP 401: the token was refused"),
            Self::Unreachable(why) => f.write_str(why),
        }
    }
}

/// Discord's REST API with deadlines, for doctor and setup (no retries: a person is waiting).
pub(crate) struct Api {
    client: twilight_http::Client,
    /// Where requests go, for messages.
    pub(crate) origin: String,
}

impl Api {
    /// A client with the bot token, or without one (webhook routes carry their own).
    pub(crate) fn new(token: Option<&Token>, api: &ApiBase) -> Self {
        let mut builder =
            twilight_http::Client::builder().timeout(Duration::from_secs(10)).remember_invalid_token(false);
        if let Some(token) = token {
            builder = builder.token(token.expose().to_owned());
        }
        if let Some(proxy) = &api.proxy {
            builder = builder.proxy(proxy.clone(), api.plain_http);
        }
        Self { client: builder.build(), origin: api.origin() }
    }

    /// GET `route`.
    pub(crate) async fn get(&self, route: &Route<'_>) -> Result<Value, Answer> {
        let request = Request::builder(route).build().map_err(|e| Answer::Unreachable(e.to_string()))?;
        self.send(request).await
    }

    /// `route` with a JSON body.
    pub(crate) async fn send_json(&self, route: &Route<'_>, body: &Value) -> Result<Value, Answer> {
        let request = Request::builder(route).json(body).build().map_err(|e| Answer::Unreachable(e.to_string()))?;
        self.send(request).await
    }

    async fn send(&self, request: Request) -> Result<Value, Answer> {
        let sent = tokio::time::timeout(Duration::from_secs(15), async {
            let response = self.client.request::<Value>(request).await.map_err(|err| self.classify(&err))?;
            response.model().await.map_err(|err| Answer::Unreachable(format!("unreadable answer from Discord: {err}")))
        })
        .await;
        sent.unwrap_or_else(|_| Err(Answer::Unreachable(format!("{} did not answer within 15 s", self.origin))))
    }

    fn classify(&self, err: &twilight_http::Error) -> Answer {
        match err.kind() {
            ErrorType::Unauthorized => Answer::Unauthorized,
            ErrorType::Response { status, .. } if status.get() == 401 => Answer::Unauthorized,
            ErrorType::Response { status, error, .. } => {
                let (code, message) = match error {
                    twilight_http::api_error::ApiError::General(general) => (general.code, general.message.clone()),
                    other => (0, other.to_string()),
                };
                Answer::Refused { status: status.get(), code, message }
            }
            _ => Answer::Unreachable(format!("cannot reach Discord at {}: {err}", self.origin)),
        }
    }
}

async fn discord_checks(config: &Config, env: &Environment) -> Vec<Check> {
    let mut checks = Vec::new();
    let Some(token) = &config.token else {
        if let Some(webhook) = &config.webhook {
            checks.push(Check::warn(
                "token",
                "no bot token: webhook-only mode, so notifications work but threads, tools, replies and \
                 approvals do not",
                "for everything, run `omp-discord setup` again and choose the bot",
            ));
            checks.push(webhook_check(config, webhook).await);
        } else if env.webhook_mode {
            checks.push(Check::warn(
                "token",
                "no bot token; DISCORD_WEBHOOK_URL is set, so only webhook notifications work",
                "for threads, tools, replies and approvals, create a bot (Developer Portal → Bot → Reset Token), \
                 save its token to a file with `chmod 600`, and set `token_file` in config.toml",
            ));
        } else {
            checks.push(Check::fail(
                "token",
                "no Discord bot token is configured",
                "save the bot token (Developer Portal → your application → Bot → Reset Token) to a file, \
                 `chmod 600` it, and set `token_file = \"/path/to/it\"` in ~/.config/omp-discord/config.toml \
                 (or export OMP_DISCORD_TOKEN_FILE)",
            ));
        }
        return checks;
    };
    let api = Api::new(Some(token), &config.api);
    let bot = match api.get(&Route::GetCurrentUser).await {
        Ok(user) => {
            let name = user["username"].as_str().unwrap_or("?");
            let id = user["id"].as_str().unwrap_or("?").to_owned();
            checks.push(Check::ok("token", format!("accepted by {}: bot {name} ({id})", api.origin)));
            id
        }
        Err(Answer::Unauthorized) => {
            checks.push(Check::fail(
                "token",
                format!("{} refused the bot token (HTTP 401)", api.origin),
                "reset the token (Developer Portal → your application → Bot → Reset Token), write the new one \
                 into your token file, then restart the sidecar (`omp-discord stop`)",
            ));
            return checks;
        }
        Err(err) => {
            checks.push(Check::fail(
                "token",
                format!("cannot check the token: {err}"),
                "check the network connection and OMP_DISCORD_API_URL / `api_url` (unset means https://discord.com)",
            ));
            return checks;
        }
    };
    checks.push(match config.home_channel {
        None => Check::fail(
            "home channel",
            "no home channel is configured",
            "in Discord enable Developer Mode, right-click the channel → Copy Channel ID, and set \
             `home_channel_id = \"<id>\"` in config.toml (or OMP_DISCORD_CHANNEL_ID)",
        ),
        Some(channel) => channel_check(&api, "home channel", "`home_channel_id`", channel, &bot, config.threads).await,
    });
    checks.extend(project_checks(config, &api, &bot).await);
    checks.push(match api.get(&Route::GetCurrentUserApplicationInfo).await {
        Ok(application) => {
            let flags = application["flags"].as_u64().unwrap_or(0);
            if flags & ((1 << 18) | (1 << 19)) != 0 {
                Check::ok("intents", "Message Content intent enabled: replies in threads reach OMP")
            } else {
                Check::warn(
                    "intents",
                    "the Message Content intent is off: replies in session threads arrive empty \
                     (buttons and slash commands still work)",
                    "Developer Portal → your application → Bot → Privileged Gateway Intents → enable \
                     MESSAGE CONTENT INTENT, then restart the sidecar",
                )
            }
        }
        Err(err) => Check::warn(
            "intents",
            format!("cannot read the application's flags: {err}"),
            "run doctor again; if it persists, check the intents in the Developer Portal by hand",
        ),
    });
    checks
}

/// Webhook-only mode: the webhook must still exist (GET with its token sends nothing).
async fn webhook_check(config: &Config, webhook: &crate::config::Webhook) -> Check {
    const NAME: &str = "webhook";
    let api = Api::new(None, &config.api);
    let route = Route::GetWebhook { token: Some(webhook.token()), webhook_id: webhook.id.get() };
    match api.get(&route).await {
        Ok(found) => Check::ok(
            NAME,
            format!(
                "webhook {:?} ({}) posts to channel {}",
                found["name"].as_str().unwrap_or("?"),
                webhook.id,
                found["channel_id"].as_str().unwrap_or("?")
            ),
        ),
        Err(Answer::Refused { status: 404 | 401, .. } | Answer::Unauthorized) => Check::fail(
            NAME,
            format!("{} does not know webhook {} any more (deleted, or its URL is incomplete)", api.origin, webhook.id),
            "create a webhook again (channel settings → Integrations → Webhooks → New Webhook → Copy Webhook URL) \
             and run `omp-discord setup --webhook`",
        ),
        Err(err) => Check::fail(
            NAME,
            format!("cannot check webhook {}: {err}", webhook.id),
            "check the network connection and OMP_DISCORD_API_URL / `api_url`",
        ),
    }
}

/// Each `[[projects]]` entry: its path names an existing directory, and its
/// channel (if any) takes the bot's posts like the home channel.
async fn project_checks(config: &Config, api: &Api, bot: &str) -> Vec<Check> {
    const NAME: &str = "project";
    let mut checks = Vec::new();
    for project in &config.projects {
        let path = project.path();
        let found = crate::config::project_dirs(project).len();
        if found == 0 {
            checks.push(Check::warn(
                NAME,
                format!("no directory matches {path}: sessions there report nowhere special and /omp ask cannot start work there"),
                "fix `path` in that [[projects]] entry (an absolute directory or glob, or one starting with ~/)",
            ));
            continue;
        }
        match project.channel.and_then(Id::new_checked) {
            Some(channel) => {
                let key = format!("`channel_id` of [[projects]] {path}");
                let check = channel_check(api, NAME, &key, channel, bot, config.threads).await;
                checks.push(Check { detail: format!("{path} → {}", check.detail), ..check });
            }
            None => checks.push(Check::ok(
                NAME,
                format!(
                    "{path}: {found} director{} (reports to the home channel)",
                    if found == 1 { "y" } else { "ies" }
                ),
            )),
        }
    }
    checks
}

/// A forum the bot may post in: sessions need threads there (a forum takes
/// no plain messages), and a forum that requires a tag needs one to give.
fn forum_check(name: &'static str, title: &str, channel: Id<ChannelMarker>, found: &Value, threads: bool) -> Check {
    if !threads {
        return Check::fail(
            name,
            format!("#{title} ({channel}) is a forum, which takes posts but no plain messages, and threads are off"),
            "set `threads = true` (or OMP_DISCORD_THREADS=on), or pick a text channel",
        );
    }
    let tags = found["available_tags"].as_array().map(Vec::as_slice).unwrap_or_default();
    if found["flags"].as_u64().unwrap_or(0) & REQUIRE_TAG == 0 {
        return Check::ok(name, format!("#{title} ({channel}): a forum; each session opens a post"));
    }
    // The sidecar's choice (see src/serve/forum.rs): the first tag anyone may set, else the first.
    let tag = tags.iter().find(|t| t["moderated"] != true).or(tags.first());
    match tag.and_then(|t| t["name"].as_str()) {
        Some(tag) => Check::ok(
            name,
            format!("#{title} ({channel}): a forum that requires a tag; each session opens a post tagged {tag:?}"),
        ),
        None => Check::fail(
            name,
            format!("#{title} ({channel}) requires a tag on every post but has no tags"),
            format!(
                "add a tag in #{title}'s settings (Tags), or turn off \"Require people to select tags when posting\""
            ),
        ),
    }
}

/// Whether the bot can post (and open threads) in `channel`, configured as `key`.
async fn channel_check(
    api: &Api,
    name: &'static str,
    key: &str,
    channel: Id<ChannelMarker>,
    bot: &str,
    threads: bool,
) -> Check {
    let grant = "open the channel's settings → Permissions, add the bot (or one of its roles) and allow \
                 View Channel, Send Messages, Embed Links, Read Message History, Create Public Threads and \
                 Send Messages in Threads";
    let found = match api.get(&Route::GetChannel { channel_id: channel.get() }).await {
        Ok(found) => found,
        Err(Answer::Refused { code: 10_003, .. } | Answer::Refused { status: 404, .. }) => {
            return Check::fail(
                name,
                format!("channel {channel} does not exist (Unknown Channel)"),
                format!(
                    "copy the id again: Developer Mode on, right-click the channel → Copy Channel ID, and set {key}"
                ),
            );
        }
        Err(Answer::Refused { code: 50_001, .. } | Answer::Refused { status: 403, .. }) => {
            return Check::fail(
                name,
                format!("the bot cannot see channel {channel} (Missing Access, 50001)"),
                format!("invite the bot to that server if it is not there; then {grant}"),
            );
        }
        Err(err) => {
            return Check::fail(name, format!("cannot read channel {channel}: {err}"), "run doctor again");
        }
    };
    let title = found["name"].as_str().unwrap_or("?").to_owned();
    let Some(guild) = found["guild_id"].as_str().and_then(|g| g.parse::<u64>().ok()) else {
        return Check::warn(
            name,
            format!("#{title} ({channel}) is not in a server"),
            "use a text or forum channel of a server for the home channel",
        );
    };
    let kind = found["type"].as_u64().unwrap_or(0);
    if kind != 0 && kind != 15 {
        return Check::warn(
            name,
            format!("#{title} ({channel}) is neither a text channel nor a forum (type {kind})"),
            format!("pick a text or forum channel for {key}"),
        );
    }
    let bot_id = bot.parse::<u64>().unwrap_or(0);
    let member = api.get(&Route::GetMember { guild_id: guild, user_id: bot_id }).await;
    let roles = api.get(&Route::GetGuildRoles { guild_id: guild }).await;
    let (Ok(member), Ok(roles)) = (member, roles) else {
        return Check::warn(
            name,
            format!("#{title} ({channel}) is visible, but the bot's permissions there cannot be read"),
            grant,
        );
    };
    let allowed = channel_permissions(guild, bot_id, &member, &roles, &found["permission_overwrites"]);
    let forum = kind == 15;
    let needed: Vec<&(u64, &str)> = if forum {
        NEEDED_IN_FORUM.iter().collect()
    } else {
        NEEDED.iter().chain(if threads { NEEDED_FOR_THREADS } else { &[] }).collect()
    };
    let missing: Vec<&str> = needed.iter().filter(|(bit, _)| allowed & bit == 0).map(|(_, name)| *name).collect();
    if forum && missing.is_empty() {
        return forum_check(name, &title, channel, &found, threads);
    }
    if missing.is_empty() {
        Check::ok(
            name,
            format!("#{title} ({channel}): the bot can post{}", if threads { " and open threads" } else { "" }),
        )
    } else {
        Check::fail(
            name,
            format!("in #{title} ({channel}) the bot lacks: {}", missing.join(", ")),
            format!(
                "open #{title}'s settings → Permissions, select the bot (or its role) and allow {}",
                missing.join(", ")
            ),
        )
    }
}

pub(crate) fn bits(value: &Value) -> u64 {
    value.as_str().and_then(|s| s.parse().ok()).or_else(|| value.as_u64()).unwrap_or(0)
}

/// Discord's permission computation for one member in one channel: base
/// permissions from @everyone and the member's roles, then the channel's
/// overwrites for @everyone, the member's roles, and the member.
pub(crate) fn channel_permissions(guild: u64, user: u64, member: &Value, roles: &Value, overwrites: &Value) -> u64 {
    let member_roles: Vec<u64> =
        member["roles"].as_array().into_iter().flatten().filter_map(|r| r.as_str()?.parse().ok()).collect();
    let role_bits = |id: u64| {
        roles.as_array().into_iter().flatten().find(|r| bits(&r["id"]) == id).map_or(0, |r| bits(&r["permissions"]))
    };
    let mut allowed = role_bits(guild) | member_roles.iter().map(|r| role_bits(*r)).fold(0, |a, b| a | b);
    if allowed & ADMINISTRATOR != 0 {
        return u64::MAX;
    }
    let overwrites = overwrites.as_array().map(Vec::as_slice).unwrap_or_default();
    let overwrite =
        |id: u64| overwrites.iter().find(|o| bits(&o["id"]) == id).map(|o| (bits(&o["allow"]), bits(&o["deny"])));
    if let Some((allow, deny)) = overwrite(guild) {
        allowed = (allowed & !deny) | allow;
    }
    let (mut allow, mut deny) = (0, 0);
    for role in &member_roles {
        if let Some((a, d)) = overwrite(*role) {
            allow |= a;
            deny |= d;
        }
    }
    allowed = (allowed & !deny) | allow;
    if let Some((allow, deny)) = overwrite(user) {
        allowed = (allowed & !deny) | allow;
    }
    allowed
}

async fn socket_checks(socket: &Path) -> Vec<Check> {
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
    checks.push(match handshake(socket).await {
        Handshake::Absent => Check::ok(
            "sidecar",
            "not running (OMP starts it on demand; `omp-discord install-service` keeps one running)",
        ),
        Handshake::Welcome { version } if version == env!("CARGO_PKG_VERSION") => {
            Check::ok("sidecar", format!("running, version {version}, protocol {PROTOCOL_VERSION}"))
        }
        Handshake::Welcome { version } => Check::warn(
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

enum Handshake {
    Absent,
    Welcome { version: String },
    Refused(String),
    Broken(String),
}

async fn handshake(socket: &Path) -> Handshake {
    let Ok(stream) = tokio::net::UnixStream::connect(socket).await else { return Handshake::Absent };
    let (read, mut write) = stream.into_split();
    let hello = ClientFrame::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        client: concat!("doctor/", env!("CARGO_PKG_VERSION")).to_owned(),
        pid: std::process::id(),
        host: crate::client::hostname(),
    });
    let exchange = async {
        write.write_all(encode_frame(&hello).as_bytes()).await?;
        let mut line = String::new();
        BufReader::new(read).read_line(&mut line).await?;
        Ok::<_, std::io::Error>(line)
    };
    match tokio::time::timeout(Duration::from_secs(5), exchange).await {
        Err(_) => Handshake::Broken("no answer within 5 s".into()),
        Ok(Err(err)) => Handshake::Broken(err.to_string()),
        Ok(Ok(line)) => match decode_server_frame(line.as_bytes()) {
            Ok(ServerFrame::Welcome { version, .. }) => Handshake::Welcome { version },
            Ok(ServerFrame::Error { message, .. }) => Handshake::Refused(message),
            Ok(other) => Handshake::Broken(format!("unexpected answer {other:?}")),
            Err(err) => Handshake::Broken(err.to_string()),
        },
    }
}

/// `name` on `PATH`.
fn which(path: Option<&str>, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

async fn plugin_check(env: &Environment) -> Check {
    const NAME: &str = "plugin";
    let Some(omp) = which(env.path.as_deref(), "omp") else {
        return Check::warn(
            NAME,
            "`omp` is not on PATH, so the plugin link cannot be checked",
            "install OMP (`npm install -g @oh-my-pi/pi-coding-agent`), then run `omp plugin link <omp-discord checkout>`",
        );
    };
    let run = tokio::process::Command::new(&omp)
        .args(["plugin", "list", "--json"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Ok(output)) if output.status.success() => output,
        Ok(Ok(output)) => {
            return Check::warn(
                NAME,
                format!("`omp plugin list --json` failed ({})", output.status),
                "run `omp plugin list` to see why",
            );
        }
        Ok(Err(err)) => {
            return Check::warn(NAME, format!("cannot run {}: {err}", omp.display()), "check your OMP install");
        }
        Err(_) => return Check::warn(NAME, "`omp plugin list --json` took longer than 30 s", "run it by hand"),
    };
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let ours = listed["npm"].as_array().into_iter().flatten().find(|p| p["name"] == "omp-discord");
    match ours {
        None => Check::fail(
            NAME,
            "omp-discord is not linked into OMP: sessions will not report to Discord",
            "run `omp plugin link <path to your omp-discord checkout>` (after `scripts/build.sh`)",
        ),
        Some(plugin) if plugin["enabled"] == false => {
            Check::fail(NAME, "omp-discord is linked but disabled", "run `omp plugin enable omp-discord`")
        }
        Some(plugin) => {
            let version = plugin["version"].as_str().unwrap_or("?");
            let dir = Path::new(plugin["path"].as_str().unwrap_or_default());
            let extensions = plugin["manifest"]["extensions"].as_array().cloned().unwrap_or_default();
            let unbuilt: Vec<&str> =
                extensions.iter().filter_map(Value::as_str).filter(|e| !dir.join(e).is_file()).collect();
            if !unbuilt.is_empty() {
                return Check::fail(
                    NAME,
                    format!("omp-discord is linked from {}, but {} is not built", dir.display(), unbuilt.join(", ")),
                    format!("run `bash scripts/build.sh` in {}", dir.display()),
                );
            }
            if version == env!("CARGO_PKG_VERSION") {
                Check::ok(NAME, format!("omp-discord {version} is linked into OMP"))
            } else {
                Check::warn(
                    NAME,
                    format!("the linked plugin is {version}, this binary is {}", env!("CARGO_PKG_VERSION")),
                    "rebuild both from one checkout (`scripts/build.sh`) and run `omp-discord stop`",
                )
            }
        }
    }
}

/// The OMP setting that bounds `tool_call` handlers, and OMP's default for it.
const TIMEOUT_KEY: &str = "extensionHandlers.toolCallTimeoutMs";
const OMP_DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Time on top of the approval timeout for the sidecar round trip.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(60);

/// OMP's global settings file: `$PI_CODING_AGENT_DIR/config.yml`, else `~/.omp/agent/config.yml`
/// (`.omp` is `$PI_CONFIG_DIR` when set), as `@oh-my-pi/pi-utils/src/dirs.ts` resolves it.
fn omp_settings_file(env: &Environment) -> Option<PathBuf> {
    let dir = match &env.omp_agent_dir {
        Some(dir) => dir.clone(),
        None => env.home.as_ref()?.join(env.omp_config_dir.as_deref().unwrap_or(".omp")).join("agent"),
    };
    let yml = dir.join("config.yml");
    if !yml.exists() && dir.join("config.yaml").exists() {
        return Some(dir.join("config.yaml"));
    }
    Some(yml)
}

/// Reads `extensionHandlers.toolCallTimeoutMs` from OMP's YAML settings: the
/// nested block form OMP writes (`extensionHandlers:` then an indented
/// `toolCallTimeoutMs: N`), the flow form, or a dotted key.
fn read_tool_call_timeout(yaml: &str) -> Option<u64> {
    let number = |s: &str| s.trim().trim_matches(['"', '\'']).replace('_', "").parse::<f64>().ok().map(|n| n as u64);
    let mut in_block = false;
    for line in yaml.lines() {
        let content = line.split(" #").next().unwrap_or_default();
        let trimmed = content.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = content.starts_with([' ', '\t']);
        if !indented {
            in_block = false;
            if let Some(rest) = trimmed.strip_prefix(&format!("{TIMEOUT_KEY}:")) {
                return number(rest);
            }
            if let Some(rest) = trimmed.strip_prefix("extensionHandlers:") {
                let rest = rest.trim();
                if let Some(flow) = rest.strip_prefix('{') {
                    let flow = flow.trim_end_matches('}');
                    return flow.split(',').find_map(|kv| number(kv.trim().strip_prefix("toolCallTimeoutMs:")?));
                }
                in_block = rest.is_empty();
            }
        } else if in_block && let Some(rest) = trimmed.strip_prefix("toolCallTimeoutMs:") {
            return number(rest);
        }
    }
    None
}

fn timeout_check(config: &Config, env: &Environment) -> Check {
    const NAME: &str = "omp timeout";
    let needed = (config.approval_timeout + TIMEOUT_MARGIN).as_millis() as u64;
    let file = omp_settings_file(env);
    let configured =
        file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).and_then(|t| read_tool_call_timeout(&t));
    let fix = format!(
        "run `omp config set {TIMEOUT_KEY} {needed}`, or put `extensionHandlers:` with an indented \
         `toolCallTimeoutMs: {needed}` in {} (the approval timeout, {} s, plus {} s)",
        file.as_ref().map_or_else(|| "~/.omp/agent/config.yml".to_owned(), |f| f.display().to_string()),
        config.approval_timeout.as_secs(),
        TIMEOUT_MARGIN.as_secs()
    );
    match configured {
        None => Check::warn(
            NAME,
            format!(
                "{TIMEOUT_KEY} is not set, so OMP gives tool_call handlers {} s: an approval still waiting on \
                 Discord after that blocks the tool call",
                OMP_DEFAULT_TIMEOUT_MS / 1000
            ),
            fix,
        ),
        Some(ms) if ms < needed => Check::warn(
            NAME,
            format!(
                "{TIMEOUT_KEY} is {ms} ms, shorter than the approval timeout ({} s) plus {} s",
                config.approval_timeout.as_secs(),
                TIMEOUT_MARGIN.as_secs()
            ),
            fix,
        ),
        Some(ms) => Check::ok(
            NAME,
            format!("{TIMEOUT_KEY} is {ms} ms, enough for {} s approvals", config.approval_timeout.as_secs()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn permissions_follow_roles_and_overwrites() {
        let (guild, bot, role) = (1, 100, 200);
        let roles = json!([
            {"id": "1", "permissions": ((1u64 << 10) | (1 << 11) | (1 << 14) | (1 << 16)).to_string()},
            {"id": "200", "permissions": ((1u64 << 35) | (1 << 38)).to_string()},
        ]);
        let member = json!({"roles": [role.to_string()]});
        let all = channel_permissions(guild, bot, &member, &roles, &json!([]));
        assert!(NEEDED.iter().chain(NEEDED_FOR_THREADS).all(|(bit, _)| all & bit != 0));
        // @everyone denied Send Messages; the role allows it back; the member overwrite denies it again.
        let overwrites = json!([
            {"id": "1", "type": 0, "allow": "0", "deny": (1u64 << 11).to_string()},
        ]);
        assert_eq!(channel_permissions(guild, bot, &member, &roles, &overwrites) & (1 << 11), 0);
        let overwrites = json!([
            {"id": "1", "type": 0, "allow": "0", "deny": (1u64 << 11).to_string()},
            {"id": "200", "type": 0, "allow": (1u64 << 11).to_string(), "deny": "0"},
        ]);
        assert_ne!(channel_permissions(guild, bot, &member, &roles, &overwrites) & (1 << 11), 0);
        let overwrites = json!([
            {"id": "200", "type": 0, "allow": (1u64 << 11).to_string(), "deny": "0"},
            {"id": "100", "type": 1, "allow": "0", "deny": (1u64 << 10).to_string()},
        ]);
        assert_eq!(channel_permissions(guild, bot, &member, &roles, &overwrites) & (1 << 10), 0);
        let admin = json!([{"id": "1", "permissions": "8"}]);
        assert_eq!(channel_permissions(guild, bot, &json!({"roles": []}), &admin, &overwrites), u64::MAX);
    }

    #[test]
    fn the_tool_call_timeout_is_read_from_omp_settings() {
        assert_eq!(read_tool_call_timeout("extensionHandlers:\n  toolCallTimeoutMs: 900000\n"), Some(900_000));
        assert_eq!(
            read_tool_call_timeout(
                "theme: dark\nextensionHandlers:\n  other: 1\n  toolCallTimeoutMs: 660_000 # ten\nx: 2"
            ),
            Some(660_000)
        );
        assert_eq!(read_tool_call_timeout("extensionHandlers: { toolCallTimeoutMs: 5000 }"), Some(5000));
        assert_eq!(read_tool_call_timeout("extensionHandlers.toolCallTimeoutMs: 7000"), Some(7000));
        assert_eq!(read_tool_call_timeout("other:\n  toolCallTimeoutMs: 1\n"), None);
        assert_eq!(read_tool_call_timeout(""), None);
    }

    #[test]
    fn checks_print_their_fix() {
        let check = Check::fail("token", "refused", "reset it");
        assert_eq!(check.to_string(), "FAIL  token         refused\n                    fix: reset it");
        assert_eq!(Check::ok("socket", "private").to_string(), "ok    socket        private");
    }
}
