//! `omp-discord setup`: from a bot token (or a webhook URL) to a working
//! configuration, checking each step against Discord and saying exactly what
//! to do when one fails. Interactive by default; `--non-interactive` takes
//! everything from flags and the environment (tokens only from the
//! environment or a 0600 file, never from argv).
//!
//! Re-running is safe: the current configuration is shown first and is the
//! default for every choice; unknown keys of an existing config file are kept.

//!
//! # Layout
//!
//! - this module: the flags, the run from start to doctor's checks, the
//!   config file (read, kept private, written atomically), the service.
//! - `ui`: the terminal: messages and questions.
//! - `bot`: the bot wizard (token, intents, invite, home channel, owner).
//! - `webhook`: the webhook-only wizard.
//! - `plugin`: linking the plugin into OMP.
//!
//! Discord is reached through [`crate::discord`]'s client, as the sidecar reaches it.

mod bot;
mod plugin;
mod ui;
mod webhook;

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::{self, Config, TokenSource};
use crate::discord::SendError;
use crate::doctor;
use ui::Ui;

/// What `setup` was asked to do (the CLI's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Take every answer from flags, the environment and the existing config; never prompt.
    #[arg(long)]
    pub non_interactive: bool,
    /// Webhook only (no bot): notifications to one channel, from OMP_DISCORD_WEBHOOK_URL or a prompt.
    #[arg(long)]
    pub webhook: bool,
    /// The server (guild id) for the home channel, when the bot is in several.
    #[arg(long, value_name = "ID")]
    pub guild: Option<u64>,
    /// Use this existing text or forum channel as the home channel.
    #[arg(long, value_name = "ID", conflicts_with = "create_channel")]
    pub channel: Option<u64>,
    /// Create a home channel with this name.
    #[arg(long, value_name = "NAME")]
    pub create_channel: Option<String>,
    /// Create the home channel as a forum (each session a post) instead of a text channel.
    #[arg(long, requires = "create_channel")]
    pub forum: bool,
    /// Your Discord user id, instead of typing a one-time code in the channel.
    #[arg(long, value_name = "ID")]
    pub owner_id: Option<u64>,
    /// Post every session into the home channel instead of a thread each.
    #[arg(long)]
    pub no_threads: bool,
    /// The plugin directory to link into OMP (default: the package this binary belongs to).
    #[arg(long, value_name = "DIR")]
    pub plugin: Option<PathBuf>,
    /// Do not link the plugin into OMP.
    #[arg(long, conflicts_with = "plugin")]
    pub no_plugin: bool,
    /// Install and start the systemd user service.
    #[arg(long)]
    pub install_service: bool,
    /// Seconds to wait for the bot to join a server and for the one-time code.
    #[arg(long = "wait", value_name = "SECS", default_value_t = 300)]
    pub wait_secs: u64,
}

impl Options {
    /// How long to wait for the bot to join a server and for the one-time code.
    fn wait(&self) -> Duration {
        Duration::from_secs(self.wait_secs)
    }
}

/// A step that cannot go on: what is wrong and what to do about it.
#[derive(Debug)]
pub struct Problem {
    what: String,
    fix: String,
}

impl Problem {
    fn new(what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { what: what.into(), fix: fix.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n  what to do: {}", self.what, self.fix)
    }
}

/// Runs setup; a [`Problem`] is printed with its fix and exits non-zero.
pub async fn run(options: Options) -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ui = Ui { interactive: !options.non_interactive };
    match setup(&ui, &options).await {
        Ok(code) => Ok(code),
        Err(problem) => {
            eprintln!("\nsetup stopped: {problem}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// An environment variable; blank counts as unset.
fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

async fn setup(ui: &Ui, options: &Options) -> Result<ExitCode, Problem> {
    ui.say("omp-discord setup");
    let config_file = config::config_path(&env_var).ok_or_else(|| {
        Problem::new("cannot place the config file: HOME is not set", "set HOME (or OMP_DISCORD_CONFIG)")
    })?;
    let existing = match Config::load() {
        Ok(config) => Some(config),
        Err(err) => {
            ui.say(format!("the current configuration cannot be used ({err}); setup writes a new one"));
            None
        }
    };
    show_current(ui, &config_file, existing.as_ref());
    let dir = config_file.parent().unwrap_or(Path::new("/")).to_owned();
    ensure_private_dir(&dir)?;

    let webhook_only = if options.webhook {
        true
    } else if ui.interactive {
        let choices = [
            "a bot (everything: a thread per session, tools, replies, approvals)".to_owned(),
            "a webhook only (notifications to one channel; nothing comes back)".to_owned(),
        ];
        let current = existing.as_ref().is_some_and(|c| c.token.is_none() && c.webhook.is_some());
        ui.choose("Connect OMP with Discord through", &choices, usize::from(current)) == 1
    } else {
        existing.as_ref().is_some_and(|c| c.token.is_none() && c.webhook.is_some())
    };
    let mut table = read_table(&config_file)?;
    if webhook_only {
        webhook::webhook_path(ui, existing.as_ref(), &dir, &mut table).await?;
    } else {
        bot::bot_path(ui, options, existing.as_ref(), &dir, &mut table).await?;
    }
    write_table(&config_file, &table)?;
    ui.say(format!("wrote {} (mode 0600)", config_file.display()));

    plugin::link_plugin(ui, options);
    if options.install_service
        || (ui.interactive && !webhook_only && ui.confirm("Install the systemd user service?", false))
    {
        install_service(ui);
    }

    ui.say("\nChecking everything with `omp-discord doctor`:");
    let report = doctor::run(Config::load(), &doctor::Environment::current()).await;
    for check in &report.checks {
        ui.say(check.to_string());
    }
    if report.failed() {
        return Err(Problem::new(
            "setup finished, but doctor found problems (above)",
            "fix the FAIL lines from the top, then run `omp-discord setup` again (it keeps what works)",
        ));
    }
    ui.say("\nDone: every OMP session on this machine now reports to Discord.");
    Ok(ExitCode::SUCCESS)
}

fn show_current(ui: &Ui, file: &Path, config: Option<&Config>) {
    let Some(config) = config else { return };
    let mut lines = Vec::new();
    if let Some(path) = &config.file {
        lines.push(format!("config file: {}", path.display()));
    } else {
        lines.push(format!("config file: none yet (will be {})", file.display()));
    }
    lines.push(match &config.token_source {
        Some(TokenSource::Env) => "bot token: from OMP_DISCORD_TOKEN".to_owned(),
        Some(TokenSource::File(path)) => format!("bot token: in {}", path.display()),
        Some(TokenSource::SystemdCredential(path)) => format!("bot token: systemd credential {}", path.display()),
        None => "bot token: none".to_owned(),
    });
    if let Some(webhook) = &config.webhook {
        lines.push(format!("webhook: {}", webhook.id));
    }
    if let Some(channel) = config.home_channel {
        lines.push(format!("home channel: {channel}"));
    }
    if !config.allowed_users.is_empty() {
        let users: Vec<String> = config.allowed_users.iter().map(ToString::to_string).collect();
        lines.push(format!("allowed users: {}", users.join(", ")));
    }
    ui.say("Current setup:");
    for line in lines {
        ui.say(format!("  {line}"));
    }
}

/// Creates the config directory (0700) and proves it is writable before any question is asked.
fn ensure_private_dir(dir: &Path) -> Result<(), Problem> {
    let unwritable = |err: std::io::Error| {
        Problem::new(
            format!("cannot write to the config directory {}: {err}", dir.display()),
            format!(
                "make {} a directory you own and can write (`mkdir -p` / `chown` / `chmod 700`), or point \
                 OMP_DISCORD_CONFIG at a file in a directory you can write, then run setup again",
                dir.display()
            ),
        )
    };
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(unwritable)?;
    let probe = dir.join(format!(".setup-probe-{}", std::process::id()));
    std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&probe).map_err(unwritable)?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

fn read_table(path: &Path) -> Result<toml::Table, Problem> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.parse::<toml::Table>().map_err(|err| {
            Problem::new(
                format!("{} is not valid TOML: {}", path.display(), err.message()),
                format!("fix or remove {}, then run setup again", path.display()),
            )
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
        Err(err) => Err(Problem::new(
            format!("cannot read {}: {err}", path.display()),
            format!("make {} readable, then run setup again", path.display()),
        )),
    }
}

/// Writes `contents` to `path` created 0600 (and tightened if it existed), replacing it atomically.
fn write_private(path: &Path, contents: &str) -> Result<(), Problem> {
    let fail = |err: std::io::Error| {
        Problem::new(
            format!("cannot write {}: {err}", path.display()),
            format!("make {} writable by you, then run setup again", path.parent().unwrap_or(path).display()),
        )
    };
    let staging = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&staging).map_err(fail)?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    file.write_all(contents.as_bytes()).map_err(fail)?;
    file.sync_all().map_err(fail)?;
    std::fs::rename(&staging, path).map_err(fail)
}

fn write_table(path: &Path, table: &toml::Table) -> Result<(), Problem> {
    let text = format!(
        "# omp-discord settings (docs/configuration.md lists every key). Written by `omp-discord setup`;\n\
         # edit freely, re-running setup keeps what it does not ask about.\n{}",
        toml::to_string(table).unwrap_or_default()
    );
    write_private(path, &text)
}

/// What a failed request means for a person.
fn refused(err: SendError, doing: &str) -> Problem {
    match err {
        SendError::Unauthorized => Problem::new(
            format!("Discord refused the bot token (HTTP 401) while {doing}: it is wrong, or it was reset"),
            "open https://discord.com/developers/applications → your application → Bot → Reset Token, copy the \
             new token, and run setup again with it (OMP_DISCORD_TOKEN_FILE, or paste it when asked)",
        ),
        SendError::Unavailable { last, .. } => Problem::new(
            format!("cannot reach Discord while {doing}: {last}"),
            "check the network connection (and OMP_DISCORD_API_URL, which is only for tests), then run setup again",
        ),
        SendError::Rejected { status, code, message } => Problem::new(
            format!("Discord refused {doing}: HTTP {status}, code {code}: {message}"),
            "run setup again; if it persists, check Discord's status page",
        ),
    }
}

/// Keeps a non-default API origin (an emulator's) in the config, so later runs reach the same Discord.
fn remember_api(table: &mut toml::Table) {
    for (name, key) in [(config::env::API_URL, "api_url"), (config::env::GATEWAY_URL, "gateway_url")] {
        if let Some(value) = env_var(name) {
            table.insert(key.into(), toml::Value::String(value));
        }
    }
}

fn install_service(ui: &Ui) {
    let config = match Config::load() {
        Ok(config) => config,
        Err(err) => return ui.say(format!("cannot install the service: {err}")),
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe.canonicalize().unwrap_or(exe),
        Err(err) => return ui.say(format!("cannot install the service: {err}")),
    };
    let plan = match crate::service::plan(&config, &exe, &env_var) {
        Ok(plan) => plan,
        Err(err) => return ui.say(format!("cannot install the service: {err}")),
    };
    if let Err(err) = crate::service::write(&plan, &config) {
        return ui.say(format!("cannot install the service: {err}"));
    }
    ui.say(format!("wrote {}", plan.unit_path.display()));
    match crate::service::systemctl(&[&["daemon-reload"], &["enable", "--now", crate::service::UNIT_NAME]]) {
        crate::service::Systemd::Done => ui.say(format!("✓ started {}", crate::service::UNIT_NAME)),
        crate::service::Systemd::Manual { reason, commands } => {
            ui.say(format!("could not start it here ({reason}); run: {}", commands.join(" && ")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_say_what_to_do() {
        let text = Problem::new("broken", "fix it").to_string();
        assert_eq!(text, "broken\n  what to do: fix it");
    }
}
