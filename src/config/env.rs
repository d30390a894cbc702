//! The environment: the `OMP_DISCORD_*` names, and how each variable
//! overrides the config file's value (blank counts as unset).

use std::path::PathBuf;
use std::time::Duration;

use omp_discord_core::inbound::{Directives, RateLimit};
use twilight_model::id::Id;

use super::file::FileSettings;
use super::projects::projects_from;
use super::secret::{read_token, read_webhook};
use super::{
    ApiBase, Config, ConfigError, DEFAULT_APPROVAL_TIMEOUT, RATE_LIMIT_FORM, invalid, parse_id, socket_from_env,
    state_dir_from_env,
};

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

/// A source of environment variables (the process's, or a test's).
pub type EnvSource<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Reads `name` through `env`, treating blank as unset.
pub(super) fn get(env: EnvSource<'_>, name: &str) -> Option<String> {
    env(name).filter(|v| !v.trim().is_empty())
}

fn ids_from_env<T>(key: &str, raw: &str) -> Result<Vec<Id<T>>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse_id(item).ok_or_else(|| invalid(key, "a comma-separated list of Discord ids", item)))
        .collect()
}

/// The configuration: `file`'s settings with each variable set in `env`
/// put in their place, and the defaults for what neither gives. `file` is
/// the config file that was read, if any.
///
/// # Errors
///
/// When a variable is malformed, or the token or webhook file is unreadable
/// or readable by others.
pub(super) fn overlay(file: FileSettings, path: Option<PathBuf>, env: EnvSource<'_>) -> Result<Config, ConfigError> {
    let (token, token_source) = match read_token(env, file.token_file.as_deref())? {
        Some((token, source)) => (Some(token), Some(source)),
        None => (None, None),
    };
    let webhook = read_webhook(env, file.webhook_file.as_deref())?;
    let home_channel = match get(env, CHANNEL_ID) {
        Some(raw) => Some(
            parse_id(&raw).ok_or_else(|| invalid(CHANNEL_ID, "a channel id (Discord's 'Copy Channel ID')", &raw))?,
        ),
        None => file.home_channel,
    };
    let api = match get(env, API_URL) {
        Some(raw) => ApiBase::parse(Some(&raw))?,
        None => file.api.unwrap_or(ApiBase { proxy: None, plain_http: false }),
    };
    let threads = match get(env, THREADS) {
        Some(raw) => parse_switch(THREADS, &raw)?,
        None => file.threads.unwrap_or(true),
    };
    let allowed_users = match get(env, ALLOWED_USERS) {
        Some(raw) => ids_from_env(ALLOWED_USERS, &raw)?,
        None => file.allowed_users.unwrap_or_default(),
    };
    let allowed_roles = match get(env, ALLOWED_ROLES) {
        Some(raw) => ids_from_env(ALLOWED_ROLES, &raw)?,
        None => file.allowed_roles.unwrap_or_default(),
    };
    let approval_timeout = match get(env, APPROVAL_TIMEOUT) {
        Some(raw) => match raw.trim().parse::<u64>() {
            Ok(secs) if secs > 0 => Duration::from_secs(secs),
            _ => return Err(invalid(APPROVAL_TIMEOUT, "a positive number of seconds", &raw)),
        },
        None => file.approval_timeout.unwrap_or(DEFAULT_APPROVAL_TIMEOUT),
    };
    let approve_tools = match get(env, APPROVE_TOOLS) {
        Some(raw) => raw.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect(),
        None => file.approve_tools.unwrap_or_default(),
    };
    let defaults = Directives::default();
    let directives = Directives {
        steer_prefix: get(env, STEER_PREFIX)
            .map(|raw| directive_value(&raw))
            .or(file.steer_prefix)
            .unwrap_or(defaults.steer_prefix),
        abort_command: get(env, ABORT_COMMAND)
            .map(|raw| directive_value(&raw))
            .or(file.abort_command)
            .unwrap_or(defaults.abort_command),
    };
    let inbound_rate_limit = match get(env, INBOUND_RATE_LIMIT) {
        Some(raw) => RateLimit::parse(&raw).map_err(|_| invalid(INBOUND_RATE_LIMIT, RATE_LIMIT_FORM, &raw))?,
        None => file.inbound_rate_limit.unwrap_or(Some(RateLimit::default())),
    };
    Ok(Config {
        token,
        token_source,
        webhook,
        home_channel,
        api,
        gateway_url: get(env, GATEWAY_URL).or(file.gateway_url),
        socket: match get(env, SOCKET) {
            Some(socket) => PathBuf::from(socket),
            None => match file.socket {
                Some(socket) => socket,
                None => socket_from_env(env)?,
            },
        },
        state_dir: match get(env, STATE_DIR) {
            Some(dir) => PathBuf::from(dir),
            None => match file.state_dir {
                Some(dir) => dir,
                None => state_dir_from_env(env)?,
            },
        },
        threads,
        log: get(env, LOG).or(file.log),
        allowed_users,
        allowed_roles,
        approval_timeout,
        approve_tools,
        directives,
        ask_command: file.ask_command.unwrap_or_else(|| vec!["omp".to_owned()]),
        inbound_rate_limit,
        report: file.report,
        projects: projects_from(file.projects, env)?,
        file: path,
        warnings: file.warnings,
    })
}

/// A steer prefix or stop command as configured: `off` (or nothing) turns it off.
pub(super) fn directive_value(raw: &str) -> String {
    let raw = raw.trim();
    if raw.eq_ignore_ascii_case("off") { String::new() } else { raw.to_owned() }
}

fn parse_switch(name: &str, raw: &str) -> Result<bool, ConfigError> {
    // The same words the extension reads its switches with.
    omp_discord_core::settings::parse_switch(raw).ok_or_else(|| invalid(name, "on or off", raw))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, setup};
    use super::*;

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
        let env = [(STEER_PREFIX, "off"), (ABORT_COMMAND, "!halt"), (INBOUND_RATE_LIMIT, "off")];
        let config = load(&setup(dir.path(), text, &env)).unwrap();
        assert_eq!(config.directives, Directives { steer_prefix: String::new(), abort_command: "!halt".into() });
        assert_eq!(config.inbound_rate_limit, None);
        let err = load(&setup(dir.path(), "inbound_rate_limit = \"fast\"", &[])).unwrap_err().to_string();
        assert!(err.contains("`inbound_rate_limit` in") && err.contains("MESSAGES/SECONDS"), "{err}");
        let err = load(&setup(dir.path(), "", &[(INBOUND_RATE_LIMIT, "0/60")])).unwrap_err().to_string();
        assert!(err.starts_with("OMP_DISCORD_INBOUND_RATE_LIMIT must be MESSAGES/SECONDS"), "{err}");
    }

    #[test]
    fn switches_read_on_and_off() {
        assert!(!parse_switch("X", " Off ").unwrap());
        assert!(parse_switch("X", "1").unwrap());
        assert!(parse_switch("X", "maybe").unwrap_err().to_string().contains("X must be on or off"));
    }
}
