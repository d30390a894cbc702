//! The bot wizard: check the token and its intents, invite the bot, pick or
//! create the home channel (checking the bot's permissions there), prove
//! who the owner is with a one-time code typed in Discord, and post a test
//! message. Each failure says what to do.

use std::path::Path;
use std::time::{Duration, Instant};

use omp_discord_core::invite::{self, Features};
use serde_json::{Value, json};
use twilight_gateway::{Event, EventTypeFlags};
use twilight_http::routing::Route;

use super::ui::Ui;
use super::{Options, Problem, env_var, refused, remember_api, write_private};
use crate::config::{self, ApiBase, Config, Token, TokenSource};
use crate::discord::gateway::{WaitError, Waiter, message_content_allowed};
use crate::discord::permissions::{bits, channel_permissions};
use crate::discord::{Discord, SendError, codes};

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

/// Sets up the bot into `table`: checks every step against Discord, and
/// writes a pasted token to a 0600 file in `dir`.
pub(super) async fn bot_path(
    ui: &Ui,
    options: &Options,
    existing: Option<&Config>,
    dir: &Path,
    table: &mut toml::Table,
) -> Result<(), Problem> {
    let api_base = existing.map(|c| c.api.clone()).unwrap_or(ApiBase { proxy: None, plain_http: false });
    let (token, source) = obtain_token(ui, existing)?;
    let api = Discord::interactive(Some(&token), &api_base);

    let bot = api
        .get_json::<Value>(&Route::GetCurrentUser)
        .await
        .map_err(|a| refused(a, "checking the token (GET /users/@me)"))?;
    let bot_id: u64 = bits(&bot["id"]);
    ui.say(format!("✓ token works: bot {} ({bot_id})", bot["username"].as_str().unwrap_or("?")));

    let application = api
        .get_json::<Value>(&Route::GetCurrentUserApplicationInfo)
        .await
        .map_err(|a| refused(a, "reading the application (GET /oauth2/applications/@me)"))?;
    if !message_content_allowed(&application) {
        return Err(Problem::new(
            "the application does not have the Message Content intent, so replies in session threads would \
             arrive empty",
            "open https://discord.com/developers/applications → your application → Bot → Privileged Gateway \
             Intents, turn on MESSAGE CONTENT INTENT, Save Changes, then run setup again",
        ));
    }
    ui.say("✓ Message Content intent is on");
    let application_id = bits(&application["id"]);

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

    let mut gateway = Waiter::connect(&token, gateway_url(existing, &api_base));
    let mut guilds = list_guilds(&api).await?;
    if guilds.is_empty() {
        ui.say(format!("\nWaiting for the bot to join a server (open the URL above; up to {} s)…", options.wait_secs));
        let joined = wait_for_guild(&mut gateway, options.wait()).await?;
        ui.say(format!("✓ the bot joined {}", joined.1));
        guilds = list_guilds(&api).await?;
        if guilds.is_empty() {
            guilds.push(joined);
        }
    }
    let current_guild = match existing.and_then(|c| c.home_channel) {
        Some(channel) => api
            .get_json::<Value>(&Route::GetChannel { channel_id: channel.get() })
            .await
            .ok()
            .map(|c| bits(&c["guild_id"])),
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
    let forum = api.get_json::<Value>(&Route::GetChannel { channel_id }).await.is_ok_and(|c| c["type"] == 15);
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
            prove_owner(&mut gateway, ui, &api, place, bot_id, options.wait()).await?
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
async fn post(api: &Discord, place: Place<'_>, title: &str, text: &str) -> Result<(u64, String), SendError> {
    let message = json!({"content": text, "allowed_mentions": {"parse": []}});
    if place.forum {
        let body = json!({"name": title, "message": message, "auto_archive_duration": 1440});
        let made: Value = api.send_json(&Route::CreateForumThread { channel_id: place.channel }, &body).await?;
        let id = made["id"].as_str().unwrap_or("?").to_owned();
        return Ok((bits(&made["id"]), id));
    }
    let sent: Value = api.send_json(&Route::CreateMessage { channel_id: place.channel }, &message).await?;
    Ok((place.channel, sent["id"].as_str().unwrap_or("?").to_owned()))
}

async fn list_guilds(api: &Discord) -> Result<Vec<(u64, String)>, Problem> {
    let route = Route::GetGuilds { after: None, before: None, limit: Some(200), shard: None };
    let guilds: Value = api.get_json(&route).await.map_err(|a| refused(a, "listing the bot's servers"))?;
    Ok(guilds
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| (bits(&g["id"]), g["name"].as_str().unwrap_or("?").to_owned()))
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
    api: &Discord,
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
    let channels: Value = api
        .get_json(&Route::GetChannels { guild_id: guild })
        .await
        .map_err(|a| refused(a, "listing the server's channels"))?;
    let usable: Vec<(u64, String)> = channels
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| matches!(c["type"].as_u64(), Some(0 | 15)))
        .map(|c| (bits(&c["id"]), c["name"].as_str().unwrap_or("?").to_owned()))
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
    api: &Discord,
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
    match api.send_json::<Value>(&Route::CreateChannel { guild_id: guild }, &body).await {
        Ok(channel) => Ok((bits(&channel["id"]), channel["name"].as_str().unwrap_or(name).to_owned())),
        Err(SendError::Rejected { code: codes::MISSING_PERMISSIONS, .. }) => Err(Problem::new(
            "the bot may not create channels in that server (Missing Permissions: Manage Channels)",
            "invite it again with the URL above (it asks for Manage Channels), or create the channel yourself and \
             pass --channel <id>",
        )),
        Err(err) => Err(refused(err, "creating the home channel")),
    }
}

/// An existing channel must be a text or forum channel of `guild` where the bot has every needed permission.
async fn check_channel(
    api: &Discord,
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
    let found = match api.get_json::<Value>(&Route::GetChannel { channel_id: channel }).await {
        Ok(found) => found,
        Err(SendError::Rejected { code: codes::MISSING_ACCESS, .. }) => {
            let needed: Vec<&str> =
                invite::permissions(Features { create_channel: false, ..features }).iter().map(|p| p.name).collect();
            return Err(Problem::new(
                format!("the bot cannot see channel {channel} (Missing Access)"),
                grant(&channel.to_string(), &needed.join(", ")),
            ));
        }
        Err(SendError::Rejected { code: codes::UNKNOWN_CHANNEL, .. } | SendError::Rejected { status: 404, .. }) => {
            return Err(Problem::new(
                format!("channel {channel} does not exist"),
                "copy the id again (Developer Mode on, right-click the channel → Copy Channel ID)",
            ));
        }
        Err(err) => return Err(refused(err, "reading the channel")),
    };
    let name = found["name"].as_str().unwrap_or("?").to_owned();
    if bits(&found["guild_id"]) != guild || !matches!(found["type"].as_u64(), Some(0 | 15)) {
        return Err(Problem::new(
            format!("#{name} ({channel}) is not a text or forum channel of the chosen server"),
            "pick a text or forum channel of that server",
        ));
    }
    let member = api.get_json::<Value>(&Route::GetMember { guild_id: guild, user_id: bot }).await;
    let roles = api.get_json::<Value>(&Route::GetGuildRoles { guild_id: guild }).await;
    let (Ok(member), Ok(roles)) = (member, roles) else {
        return Err(Problem::new(format!("cannot read the bot's permissions in #{name}"), "run setup again"));
    };
    let allowed = channel_permissions(guild, bot, &member, &roles, &found["permission_overwrites"]);
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

/// The gateway's URL as `serve` finds it: the variable, the config file's
/// `gateway_url`, else an emulator's (it serves its gateway on its REST port).
fn gateway_url(existing: Option<&Config>, api: &ApiBase) -> Option<String> {
    env_var(config::env::GATEWAY_URL)
        .or_else(|| existing.and_then(|c| c.gateway_url.clone()))
        .or_else(|| api.local_gateway())
}

impl From<WaitError> for Problem {
    fn from(err: WaitError) -> Self {
        match err {
            WaitError::Closed => Problem::new(
                "the gateway connection closed (bad token or intents)",
                "run setup again; if it persists, reset the token and check the intents",
            ),
            WaitError::NotReady => Problem::new(
                "the gateway connection did not become ready",
                "check the network, the token and its intents, then run setup again",
            ),
        }
    }
}

/// Waits for the bot to join a server (a person opens the invite URL).
async fn wait_for_guild(gateway: &mut Waiter, wait: Duration) -> Result<(u64, String), Problem> {
    let deadline = Instant::now() + wait;
    while let Some(event) = gateway.next(EventTypeFlags::GUILD_CREATE, deadline).await? {
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
    gateway: &mut Waiter,
    ui: &Ui,
    api: &Discord,
    place: Place<'_>,
    bot: u64,
    wait: Duration,
) -> Result<u64, Problem> {
    gateway.until_ready(Instant::now() + wait).await?;
    let code = one_time_code();
    let note = "omp-discord setup: the person running setup will type a one-time code here.";
    let (channel, name) = match post(api, place, "omp-discord setup", note).await {
        Ok((post, _)) if place.forum => (post, format!("the post \"omp-discord setup\" in #{}", place.name)),
        Ok(_) => (place.channel, format!("#{}", place.name)),
        Err(err) if place.forum => return Err(refused(err, "opening a post for the one-time code")),
        // Only a note: the person can type the code all the same.
        Err(_) => (place.channel, format!("#{}", place.name)),
    };
    ui.say(format!(
        "\nTo prove who you are, type this code in {name} on Discord (waiting up to {} s):\n  {code}",
        wait.as_secs()
    ));
    let deadline = Instant::now() + wait;
    while let Some(event) = gateway.next(EventTypeFlags::MESSAGE_CREATE, deadline).await? {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_six_digits() {
        let code = one_time_code();
        assert!(code.starts_with("omp-") && code.len() == 10 && code[4..].chars().all(|c| c.is_ascii_digit()));
    }
}
