//! `omp-discord setup`: from a bot token (or a webhook URL) to a working
//! configuration, checking each step against Discord and saying exactly what
//! to do when one fails. Interactive by default; `--non-interactive` takes
//! everything from flags and the environment (tokens only from the
//! environment or a 0600 file, never from argv).
//!
//! Re-running is safe: the current configuration is shown first and is the
//! default for every choice; unknown keys of an existing config file are kept.

use std::fmt;
use std::io::{BufRead, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use omp_discord_core::invite::{self, Features};
use serde_json::{Value, json};
use twilight_gateway::{CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt};
use twilight_http::routing::Route;

use crate::config::{self, ApiBase, Config, Token, TokenSource, Webhook};
use crate::doctor::{self, Answer, Api};

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

/// Prompts on the terminal, or answers from the defaults when non-interactive.
struct Ui {
    interactive: bool,
}

impl Ui {
    fn say(&self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
    }

    fn line(&self, prompt: &str) -> String {
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line.trim().to_owned()
    }

    /// A yes/no question; non-interactive answers `default`.
    fn confirm(&self, prompt: &str, default: bool) -> bool {
        if !self.interactive {
            return default;
        }
        let hint = if default { "[Y/n]" } else { "[y/N]" };
        match self.line(&format!("{prompt} {hint} ")).to_ascii_lowercase().as_str() {
            "" => default,
            answer => answer.starts_with('y'),
        }
    }

    /// Picks one of `options` by number (1-based on screen).
    fn choose(&self, prompt: &str, options: &[String], default: usize) -> usize {
        self.say(prompt);
        for (i, option) in options.iter().enumerate() {
            self.say(format!("  {}) {option}", i + 1));
        }
        loop {
            let answer = self.line(&format!("choose 1-{} [{}]: ", options.len(), default + 1));
            if answer.is_empty() {
                return default;
            }
            match answer.parse::<usize>() {
                Ok(n) if (1..=options.len()).contains(&n) => return n - 1,
                _ => self.say(format!("please type a number from 1 to {}", options.len())),
            }
        }
    }

    /// Reads a secret without echoing it (the terminal's echo is off while typing).
    fn secret(&self, prompt: &str) -> String {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        // Echo goes off before the prompt shows: a token pasted the moment it appears is never echoed.
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(saved) = &saved {
            let mut quiet = saved.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
        }
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = stdin.lock().read_line(&mut line);
        if let Some(saved) = &saved {
            let _ = tcsetattr(&stdin, OptionalActions::Now, saved);
        }
        println!();
        line.trim().to_owned()
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
        webhook_path(ui, options, existing.as_ref(), &dir, &mut table).await?;
    } else {
        bot_path(ui, options, existing.as_ref(), &dir, &mut table).await?;
    }
    write_table(&config_file, &table)?;
    ui.say(format!("wrote {} (mode 0600)", config_file.display()));

    link_plugin(ui, options);
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
fn refused(answer: Answer, doing: &str) -> Problem {
    match answer {
        Answer::Unauthorized => Problem::new(
            format!("Discord refused the bot token (HTTP 401) while {doing}: it is wrong, or it was reset"),
            "open https://discord.com/developers/applications → your application → Bot → Reset Token, copy the \
             new token, and run setup again with it (OMP_DISCORD_TOKEN_FILE, or paste it when asked)",
        ),
        Answer::Unreachable(why) => Problem::new(
            format!("cannot reach Discord while {doing}: {why}"),
            "check the network connection (and OMP_DISCORD_API_URL, which is only for tests), then run setup again",
        ),
        refused @ Answer::Refused { .. } => Problem::new(
            format!("Discord refused {doing}: {refused}"),
            "run setup again; if it persists, check Discord's status page",
        ),
    }
}

/// The token: the current one (environment, token file, credential) or, interactively, a pasted one.
fn obtain_token(ui: &Ui, existing: Option<&Config>) -> Result<(Token, Option<TokenSource>), Problem> {
    if let Some(config) = existing
        && let Some(token) = &config.token
        && (!ui.interactive || ui.confirm("Use the bot token configured now?", true))
    {
        return Ok((token.clone(), config.token_source.clone()));
    }
    if !ui.interactive {
        return Err(Problem::new(
            "no bot token: --non-interactive takes it from the environment only",
            "save the token (Developer Portal → your application → Bot → Reset Token) to a file with `chmod 600` \
             and export OMP_DISCORD_TOKEN_FILE=/path/to/it (or OMP_DISCORD_TOKEN), then run setup again",
        ));
    }
    ui.say(
        "Paste the bot token (https://discord.com/developers/applications → your application → Bot → Reset \
         Token). It is not shown while you type.",
    );
    let pasted = ui.secret("bot token: ");
    if pasted.is_empty() {
        return Err(Problem::new("no token was pasted", "run setup again and paste the bot token when asked"));
    }
    Ok((config::token_from_secret(pasted), None))
}

async fn bot_path(
    ui: &Ui,
    options: &Options,
    existing: Option<&Config>,
    dir: &Path,
    table: &mut toml::Table,
) -> Result<(), Problem> {
    let api_base = existing.map(|c| c.api.clone()).unwrap_or(ApiBase { proxy: None, plain_http: false });
    let (token, source) = obtain_token(ui, existing)?;
    let api = Api::new(Some(&token), &api_base);

    let bot = api.get(&Route::GetCurrentUser).await.map_err(|a| refused(a, "checking the token (GET /users/@me)"))?;
    let bot_id: u64 = doctor::bits(&bot["id"]);
    ui.say(format!("✓ token works: bot {} ({bot_id})", bot["username"].as_str().unwrap_or("?")));

    let application = api
        .get(&Route::GetCurrentUserApplicationInfo)
        .await
        .map_err(|a| refused(a, "reading the application (GET /oauth2/applications/@me)"))?;
    let flags = application["flags"].as_u64().unwrap_or(0);
    if flags & ((1 << 18) | (1 << 19)) == 0 {
        return Err(Problem::new(
            "the application does not have the Message Content intent, so replies in session threads would \
             arrive empty",
            "open https://discord.com/developers/applications → your application → Bot → Privileged Gateway \
             Intents, turn on MESSAGE CONTENT INTENT, Save Changes, then run setup again",
        ));
    }
    ui.say("✓ Message Content intent is on");
    let application_id = doctor::bits(&application["id"]);

    let threads = !options.no_threads && existing.is_none_or(|c| c.threads);
    let create = options.create_channel.is_some()
        || (ui.interactive && options.channel.is_none() && ui.confirm("Should setup create the home channel?", true));
    let features = Features { threads, replies: true, commands: true, create_channel: create };
    ui.say("\nInvite the bot to your server with this URL (it asks only for what omp-discord uses):");
    ui.say(format!("  {}", invite::invite_url(application_id, features)));
    for permission in invite::permissions(features) {
        ui.say(format!("  - {}: {}", permission.name, permission.why));
    }
    ui.say("  (the applications.commands scope adds the /omp slash commands)");

    let mut gateway = Gateway::connect(&token, existing, &api_base);
    let mut guilds = list_guilds(&api).await?;
    if guilds.is_empty() {
        ui.say(format!("\nWaiting for the bot to join a server (open the URL above; up to {} s)…", options.wait_secs));
        let joined = gateway.wait_for_guild(options.wait()).await?;
        ui.say(format!("✓ the bot joined {}", joined.1));
        guilds = list_guilds(&api).await?;
        if guilds.is_empty() {
            guilds.push(joined);
        }
    }
    let current_guild = match existing.and_then(|c| c.home_channel) {
        Some(channel) => {
            api.get(&Route::GetChannel { channel_id: channel.get() }).await.ok().map(|c| doctor::bits(&c["guild_id"]))
        }
        None => None,
    };
    let guild = pick_guild(ui, options, &guilds, current_guild)?;

    let (channel_id, channel_name) = match (&options.create_channel, options.channel) {
        (Some(name), _) => create_channel(&api, guild, bot_id, name, options.forum, features).await?,
        (None, Some(id)) => check_channel(&api, guild, bot_id, id, features).await?,
        (None, None) => {
            choose_channel(ui, &api, guild, bot_id, features, existing.and_then(|c| c.home_channel.map(|c| c.get())))
                .await?
        }
    };
    ui.say(format!("✓ home channel #{channel_name} ({channel_id}): the bot can post there"));
    // A forum takes posts, not messages: setup's own messages open posts there.
    let forum = api.get(&Route::GetChannel { channel_id }).await.is_ok_and(|c| c["type"] == 15);
    if forum && !threads {
        return Err(Problem::new(
            format!("#{channel_name} is a forum, which takes posts but no plain messages"),
            "leave out --no-threads (each session opens a post there), or pick a text channel",
        ));
    }

    let owner = match options.owner_id {
        Some(owner) => owner,
        None => {
            let place = Place { channel: channel_id, name: &channel_name, forum };
            gateway.prove_owner(ui, &api, place, bot_id, options.wait()).await?
        }
    };
    gateway.close();
    ui.say(format!("✓ owner: Discord user {owner} (the first person allowed to drive sessions)"));

    // The token goes to a 0600 file unless it already lives in one.
    let token_file = match source {
        Some(TokenSource::File(path)) => path,
        _ => {
            let path = dir.join("token");
            write_private(&path, &format!("{}\n", token.expose()))?;
            ui.say(format!("wrote the token to {} (mode 0600)", path.display()));
            path
        }
    };
    table.insert("token_file".into(), toml::Value::String(token_file.display().to_string()));
    table.insert("home_channel_id".into(), toml::Value::String(channel_id.to_string()));
    table.insert("threads".into(), toml::Value::Boolean(threads));
    let mut users: Vec<toml::Value> =
        table.get("allowed_users").and_then(|v| v.as_array().cloned()).unwrap_or_default();
    if !users.iter().any(|u| u.as_str() == Some(&owner.to_string())) {
        users.push(toml::Value::String(owner.to_string()));
    }
    table.insert("allowed_users".into(), toml::Value::Array(users));
    remember_api(table);

    let text = format!(
        "✅ omp-discord is set up: OMP sessions on {} report here{}.",
        crate::client::hostname(),
        if threads { ", a thread each" } else { "" }
    );
    let place = Place { channel: channel_id, name: &channel_name, forum };
    let (_, sent) =
        post(&api, place, "omp-discord is set up", &text).await.map_err(|a| refused(a, "posting the test message"))?;
    ui.say(format!("✓ test message {sent} posted in #{channel_name}"));
    Ok(())
}

/// Where setup writes: the home channel, and whether it is a forum.
#[derive(Clone, Copy)]
struct Place<'a> {
    channel: u64,
    name: &'a str,
    forum: bool,
}

/// Posts `text` in `place`: a message, or in a forum a post titled `title`
/// (with `text` as its first message). Returns the channel the message is
/// in (the post, in a forum) and its id.
async fn post(api: &Api, place: Place<'_>, title: &str, text: &str) -> Result<(u64, String), Answer> {
    let message = json!({"content": text, "allowed_mentions": {"parse": []}});
    if place.forum {
        let body = json!({"name": title, "message": message, "auto_archive_duration": 1440});
        let made = api.send_json(&Route::CreateForumThread { channel_id: place.channel }, &body).await?;
        let id = made["id"].as_str().unwrap_or("?").to_owned();
        return Ok((doctor::bits(&made["id"]), id));
    }
    let sent = api.send_json(&Route::CreateMessage { channel_id: place.channel }, &message).await?;
    Ok((place.channel, sent["id"].as_str().unwrap_or("?").to_owned()))
}

/// Keeps a non-default API origin (an emulator's) in the config, so later runs reach the same Discord.
fn remember_api(table: &mut toml::Table) {
    for (name, key) in [(config::env::API_URL, "api_url"), (config::env::GATEWAY_URL, "gateway_url")] {
        if let Some(value) = env_var(name) {
            table.insert(key.into(), toml::Value::String(value));
        }
    }
}

async fn list_guilds(api: &Api) -> Result<Vec<(u64, String)>, Problem> {
    let route = Route::GetGuilds { after: None, before: None, limit: Some(200), shard: None };
    let guilds = api.get(&route).await.map_err(|a| refused(a, "listing the bot's servers"))?;
    Ok(guilds
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| (doctor::bits(&g["id"]), g["name"].as_str().unwrap_or("?").to_owned()))
        .collect())
}

fn pick_guild(ui: &Ui, options: &Options, guilds: &[(u64, String)], current: Option<u64>) -> Result<u64, Problem> {
    if let Some(wanted) = options.guild {
        return guilds.iter().find(|(id, _)| *id == wanted).map(|(id, _)| *id).ok_or_else(|| {
            Problem::new(
                format!("the bot is not in server {wanted}"),
                "open the invite URL above and add the bot to that server, or pass the id of one it is in",
            )
        });
    }
    if let [(only, name)] = guilds {
        ui.say(format!("✓ server: {name} ({only})"));
        return Ok(*only);
    }
    let default = current.and_then(|c| guilds.iter().position(|(id, _)| *id == c));
    if !ui.interactive {
        return default.map(|i| guilds[i].0).ok_or_else(|| {
            let names: Vec<String> = guilds.iter().map(|(id, name)| format!("{name} ({id})")).collect();
            Problem::new(
                format!("the bot is in {} servers: {}", guilds.len(), names.join(", ")),
                "pass --guild <id> to say which one gets the home channel",
            )
        });
    }
    let names: Vec<String> = guilds.iter().map(|(id, name)| format!("{name} ({id})")).collect();
    Ok(guilds[ui.choose("Which server?", &names, default.unwrap_or(0))].0)
}

async fn choose_channel(
    ui: &Ui,
    api: &Api,
    guild: u64,
    bot: u64,
    features: Features,
    current: Option<u64>,
) -> Result<(u64, String), Problem> {
    if !ui.interactive {
        return match current {
            Some(channel) => check_channel(api, guild, bot, channel, features).await,
            None => Err(Problem::new(
                "no home channel was given",
                "pass --channel <id> (an existing text or forum channel) or --create-channel <name>",
            )),
        };
    }
    if features.create_channel {
        let name = ui.line("Name of the new home channel [omp-sessions]: ");
        let forum = ui.choose("Channel type", &["text channel".to_owned(), "forum".to_owned()], 0) == 1;
        let name = if name.is_empty() { "omp-sessions".to_owned() } else { name };
        return create_channel(api, guild, bot, &name, forum, features).await;
    }
    let channels = api
        .get(&Route::GetChannels { guild_id: guild })
        .await
        .map_err(|a| refused(a, "listing the server's channels"))?;
    let usable: Vec<(u64, String)> = channels
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| matches!(c["type"].as_u64(), Some(0 | 15)))
        .map(|c| (doctor::bits(&c["id"]), c["name"].as_str().unwrap_or("?").to_owned()))
        .collect();
    if usable.is_empty() {
        return Err(Problem::new(
            "the bot sees no text or forum channel in that server",
            "give the bot View Channel in a channel, or run setup again and let it create one",
        ));
    }
    let names: Vec<String> = usable.iter().map(|(id, name)| format!("#{name} ({id})")).collect();
    let default = current.and_then(|c| usable.iter().position(|(id, _)| *id == c)).unwrap_or(0);
    let picked = usable[ui.choose("Which channel is the home channel?", &names, default)].0;
    check_channel(api, guild, bot, picked, features).await
}

/// Creates the home channel: the bot is allowed what it needs there even if the
/// server's defaults are strict, and only the bot opens threads (each is a session).
async fn create_channel(
    api: &Api,
    guild: u64,
    bot: u64,
    name: &str,
    forum: bool,
    features: Features,
) -> Result<(u64, String), Problem> {
    let allow = invite::channel_bits(features);
    let mut overwrites = vec![json!({"id": bot.to_string(), "type": 1, "allow": allow.to_string(), "deny": "0"})];
    if !forum && features.threads {
        let deny = invite::bits::CREATE_PUBLIC_THREADS;
        overwrites.push(json!({"id": guild.to_string(), "type": 0, "allow": "0", "deny": deny.to_string()}));
    }
    let body = json!({
        "name": name,
        "type": if forum { 15 } else { 0 },
        "topic": "OMP coding sessions (omp-discord)",
        "permission_overwrites": overwrites,
    });
    match api.send_json(&Route::CreateChannel { guild_id: guild }, &body).await {
        Ok(channel) => Ok((doctor::bits(&channel["id"]), channel["name"].as_str().unwrap_or(name).to_owned())),
        Err(Answer::Refused { code: 50_013, .. }) => Err(Problem::new(
            "the bot may not create channels in that server (Missing Permissions: Manage Channels)",
            "invite it again with the URL above (it asks for Manage Channels), or create the channel yourself and \
             pass --channel <id>",
        )),
        Err(answer) => Err(refused(answer, "creating the home channel")),
    }
}

/// An existing channel must be a text or forum channel of `guild` where the bot has every needed permission.
async fn check_channel(
    api: &Api,
    guild: u64,
    bot: u64,
    channel: u64,
    features: Features,
) -> Result<(u64, String), Problem> {
    let grant = |name: &str, missing: &str| {
        format!(
            "in Discord open #{name} → Edit Channel → Permissions, add the bot (or its role) and allow {missing}; \
             then run setup again"
        )
    };
    let found = match api.get(&Route::GetChannel { channel_id: channel }).await {
        Ok(found) => found,
        Err(Answer::Refused { code: 50_001, .. }) => {
            let needed: Vec<&str> =
                invite::permissions(Features { create_channel: false, ..features }).iter().map(|p| p.name).collect();
            return Err(Problem::new(
                format!("the bot cannot see channel {channel} (Missing Access)"),
                grant(&channel.to_string(), &needed.join(", ")),
            ));
        }
        Err(Answer::Refused { code: 10_003, .. } | Answer::Refused { status: 404, .. }) => {
            return Err(Problem::new(
                format!("channel {channel} does not exist"),
                "copy the id again (Developer Mode on, right-click the channel → Copy Channel ID)",
            ));
        }
        Err(answer) => return Err(refused(answer, "reading the channel")),
    };
    let name = found["name"].as_str().unwrap_or("?").to_owned();
    if doctor::bits(&found["guild_id"]) != guild || !matches!(found["type"].as_u64(), Some(0 | 15)) {
        return Err(Problem::new(
            format!("#{name} ({channel}) is not a text or forum channel of the chosen server"),
            "pick a text or forum channel of that server",
        ));
    }
    let member = api.get(&Route::GetMember { guild_id: guild, user_id: bot }).await;
    let roles = api.get(&Route::GetGuildRoles { guild_id: guild }).await;
    let (Ok(member), Ok(roles)) = (member, roles) else {
        return Err(Problem::new(format!("cannot read the bot's permissions in #{name}"), "run setup again"));
    };
    let allowed = doctor::channel_permissions(guild, bot, &member, &roles, &found["permission_overwrites"]);
    let needed = invite::permissions(Features { create_channel: false, ..features });
    let missing: Vec<&str> = invite::missing(&needed, allowed).iter().map(|p| p.name).collect();
    if !missing.is_empty() {
        return Err(Problem::new(
            format!("in #{name} ({channel}) the bot lacks: {}", missing.join(", ")),
            grant(&name, &missing.join(", ")),
        ));
    }
    Ok((channel, name))
}

/// One gateway connection for the waits of setup (the bot joining a server, the owner's code).
struct Gateway {
    shard: Shard,
    /// Whether READY arrived: only then are new messages dispatched to this connection.
    ready: bool,
}

impl Gateway {
    fn connect(token: &Token, existing: Option<&Config>, api: &ApiBase) -> Self {
        let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
        let mut config = ConfigBuilder::new(token.expose().to_owned(), intents);
        // Like `serve`: an emulator serves its gateway on its REST port.
        let url = env_var(config::env::GATEWAY_URL)
            .or_else(|| existing.and_then(|c| c.gateway_url.clone()))
            .or_else(|| api.proxy.as_ref().filter(|_| api.plain_http).map(|proxy| format!("ws://{proxy}")));
        if let Some(url) = url {
            config = config.proxy_url(url);
        }
        Self { shard: Shard::with_config(ShardId::ONE, config.build()), ready: false }
    }

    /// The next event of `wanted` before `deadline`, or `None` when the time is up.
    async fn next(&mut self, wanted: EventTypeFlags, deadline: Instant) -> Result<Option<Event>, Problem> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.shard.next_event(wanted | EventTypeFlags::READY)).await {
                Err(_) => return Ok(None),
                Ok(Some(Ok(Event::Ready(_)))) if !wanted.contains(EventTypeFlags::READY) => self.ready = true,
                Ok(None) => {
                    return Err(Problem::new(
                        "the gateway connection closed (bad token or intents)",
                        "run setup again; if it persists, reset the token and check the intents",
                    ));
                }
                Ok(Some(Ok(event))) => return Ok(Some(event)),
                Ok(Some(Err(err))) => tracing::debug!(error = %err, "gateway event could not be read"),
            }
        }
    }

    /// Waits for READY. The shard connects lazily: a code typed before READY would never reach it.
    async fn until_ready(&mut self, deadline: Instant) -> Result<(), Problem> {
        while !self.ready {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.shard.next_event(EventTypeFlags::READY)).await {
                Ok(Some(Ok(Event::Ready(_)))) => self.ready = true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return Err(Problem::new(
                        "the gateway connection did not become ready",
                        "check the network, the token and its intents, then run setup again",
                    ));
                }
            }
        }
        Ok(())
    }

    async fn wait_for_guild(&mut self, wait: Duration) -> Result<(u64, String), Problem> {
        let deadline = Instant::now() + wait;
        while let Some(event) = self.next(EventTypeFlags::GUILD_CREATE, deadline).await? {
            if let Event::GuildCreate(guild) = event
                && let twilight_model::gateway::payload::incoming::GuildCreate::Available(guild) = *guild
            {
                return Ok((guild.id.get(), guild.name));
            }
        }
        Err(Problem::new(
            "the bot is not in any server yet",
            "open the invite URL printed above, pick your server and authorize; then run setup again (it waits \
             for the bot to join)",
        ))
    }

    /// Asks the person to type a one-time code in the home channel (in a
    /// forum: in the post setup opens for it); whoever does is the owner.
    async fn prove_owner(
        &mut self,
        ui: &Ui,
        api: &Api,
        place: Place<'_>,
        bot: u64,
        wait: Duration,
    ) -> Result<u64, Problem> {
        self.until_ready(Instant::now() + wait).await?;
        let code = one_time_code();
        let note = "omp-discord setup: the person running setup will type a one-time code here.";
        let (channel, name) = match post(api, place, "omp-discord setup", note).await {
            Ok((post, _)) if place.forum => (post, format!("the post \"omp-discord setup\" in #{}", place.name)),
            Ok(_) => (place.channel, format!("#{}", place.name)),
            Err(answer) if place.forum => return Err(refused(answer, "opening a post for the one-time code")),
            // Only a note: the person can type the code all the same.
            Err(_) => (place.channel, format!("#{}", place.name)),
        };
        ui.say(format!(
            "\nTo prove who you are, type this code in {name} on Discord (waiting up to {} s):\n  {code}",
            wait.as_secs()
        ));
        let deadline = Instant::now() + wait;
        while let Some(event) = self.next(EventTypeFlags::MESSAGE_CREATE, deadline).await? {
            if let Event::MessageCreate(message) = event
                && message.channel_id.get() == channel
                && message.author.id.get() != bot
                && !message.author.bot
                && message.content.trim() == code
            {
                return Ok(message.author.id.get());
            }
        }
        Err(Problem::new(
            format!("nobody typed the code in {name} within {} s", wait.as_secs()),
            "run setup again and type the code it shows in the home channel (or pass --owner-id <your user id>)",
        ))
    }

    fn close(self) {
        self.shard.close(CloseFrame::NORMAL);
    }
}

/// Six random digits, from the kernel's generator.
fn one_time_code() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 4];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).is_ok();
    let n = if random {
        u32::from_le_bytes(bytes)
    } else {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos())
    };
    format!("omp-{:06}", n % 1_000_000)
}

async fn webhook_path(
    ui: &Ui,
    options: &Options,
    existing: Option<&Config>,
    dir: &Path,
    table: &mut toml::Table,
) -> Result<(), Problem> {
    let _ = options;
    let copy = "in Discord open the channel's settings → Integrations → Webhooks → New Webhook → Copy Webhook URL";
    let url = match env_var(config::env::WEBHOOK_URL) {
        Some(url) => url,
        None if existing.is_some_and(|c| c.webhook.is_some())
            && (!ui.interactive || ui.confirm("Keep the webhook configured now?", true)) =>
        {
            let webhook = existing.and_then(|c| c.webhook.clone()).expect("checked above");
            return finish_webhook(ui, existing, dir, table, &webhook, None).await;
        }
        None if ui.interactive => {
            ui.say(format!("Paste the webhook URL ({copy}). It is not shown while you type."));
            ui.secret("webhook URL: ")
        }
        None => {
            return Err(Problem::new(
                "no webhook URL: --non-interactive takes it from OMP_DISCORD_WEBHOOK_URL",
                format!("{copy}, then export OMP_DISCORD_WEBHOOK_URL with it and run setup again"),
            ));
        }
    };
    let webhook = Webhook::parse("the webhook URL", &url).map_err(|err| Problem::new(err.to_string(), copy))?;
    finish_webhook(ui, existing, dir, table, &webhook, Some(&url)).await
}

async fn finish_webhook(
    ui: &Ui,
    existing: Option<&Config>,
    dir: &Path,
    table: &mut toml::Table,
    webhook: &Webhook,
    url: Option<&str>,
) -> Result<(), Problem> {
    let api_base = match env_var(config::env::API_URL) {
        Some(raw) => ApiBase::parse(Some(&raw)).map_err(|e| Problem::new(e.to_string(), "fix OMP_DISCORD_API_URL"))?,
        None => existing.map(|c| c.api.clone()).unwrap_or(ApiBase { proxy: None, plain_http: false }),
    };
    let api = Api::new(None, &api_base);
    let gone = || {
        Problem::new(
            format!("Discord does not know this webhook ({}): it was deleted, or the URL is incomplete", webhook.id),
            "create a webhook again (channel settings → Integrations → Webhooks → New Webhook → Copy Webhook URL) \
             and run setup again with it",
        )
    };
    let found = match api.get(&Route::GetWebhook { token: Some(webhook.token()), webhook_id: webhook.id.get() }).await {
        Ok(found) => found,
        Err(Answer::Refused { status: 401 | 404, .. } | Answer::Unauthorized) => return Err(gone()),
        Err(answer) => return Err(refused(answer, "checking the webhook")),
    };
    ui.say(format!(
        "✓ webhook {:?} posts to channel {}",
        found["name"].as_str().unwrap_or("?"),
        found["channel_id"].as_str().unwrap_or("?")
    ));
    let route = Route::ExecuteWebhook {
        thread_id: None,
        token: webhook.token(),
        wait: Some(true),
        with_components: None,
        webhook_id: webhook.id.get(),
    };
    let text = format!("✅ omp-discord is set up: OMP sessions on {} notify here.", crate::client::hostname());
    let sent = match api.send_json(&route, &json!({"content": text, "allowed_mentions": {"parse": []}})).await {
        Ok(sent) => sent,
        Err(Answer::Refused { status: 401 | 404, .. } | Answer::Unauthorized) => return Err(gone()),
        Err(answer) => return Err(refused(answer, "posting the test message through the webhook")),
    };
    ui.say(format!("✓ test message {} posted through the webhook", sent["id"].as_str().unwrap_or("?")));
    if let Some(url) = url {
        let path = dir.join("webhook");
        write_private(&path, &format!("{}\n", url.trim()))?;
        ui.say(format!("wrote the webhook URL to {} (mode 0600)", path.display()));
        table.insert("webhook_file".into(), toml::Value::String(path.display().to_string()));
    }
    remember_api(table);
    Ok(())
}

/// The plugin directory: `--plugin`, else the package this binary came with
/// (a checkout's `target/release/`, or the npm platform package inside or next
/// to the installed plugin: `node_modules/omp-discord-linux-x64/bin/`).
fn plugin_dir(options: &Options) -> Option<PathBuf> {
    if let Some(dir) = &options.plugin {
        return Some(dir.clone());
    }
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    exe.ancestors()
        .skip(1)
        .take(6)
        .flat_map(|dir| {
            // The platform package hoisted next to the plugin package.
            let sibling = is_installed_package(dir).then(|| dir.with_file_name("omp-discord"));
            std::iter::once(dir.to_path_buf()).chain(sibling)
        })
        .find(|dir| is_plugin(dir))
}

/// Whether `dir` is an installed package (`omp plugin install` puts it in
/// OMP's `plugins/node_modules/`): linking it would replace it with a link to itself.
fn is_installed_package(dir: &Path) -> bool {
    dir.parent().and_then(Path::file_name).is_some_and(|name| name == "node_modules")
}

fn is_plugin(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|package| package["name"] == "omp-discord" && package["omp"]["extensions"].is_array())
}

fn link_plugin(ui: &Ui, options: &Options) {
    if options.no_plugin {
        return;
    }
    let Some(dir) = plugin_dir(options) else {
        ui.say(
            "the plugin directory was not found next to this binary; link it with `omp plugin link <dir>` (or \
                install the packages: see \"Installing without Rust\" in docs/setup.md)",
        );
        return;
    };
    if is_installed_package(&dir) {
        ui.say(format!("✓ the plugin is installed in OMP ({})", dir.display()));
        return;
    }
    let run = std::process::Command::new("omp")
        .args(["plugin", "link"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .output();
    match run {
        Ok(output) if output.status.success() => ui.say(format!("✓ linked the plugin {} into OMP", dir.display())),
        Ok(output) if String::from_utf8_lossy(&output.stderr).contains("already") => {
            ui.say(format!("✓ the plugin {} is already linked into OMP", dir.display()));
        }
        Ok(output) => ui.say(format!(
            "could not link the plugin ({}): {}; run `omp plugin link {}` yourself",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            dir.display()
        )),
        Err(err) => ui.say(format!(
            "`omp` is not on PATH ({err}); install OMP (`npm install -g @oh-my-pi/pi-coding-agent`) and run \
             `omp plugin link {}`",
            dir.display()
        )),
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
    fn codes_have_six_digits() {
        let code = one_time_code();
        assert!(code.starts_with("omp-") && code.len() == 10 && code[4..].chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn problems_say_what_to_do() {
        let text = Problem::new("broken", "fix it").to_string();
        assert_eq!(text, "broken\n  what to do: fix it");
    }
}
