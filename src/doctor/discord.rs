//! The checks that ask Discord: the bot token, the home channel and each
//! project's channel (the bot's permissions there; a forum's tags), the
//! Message Content intent, or, without a bot, the webhook. Each goes
//! through the interactive client of [`crate::discord`].

use serde_json::Value;
use twilight_http::routing::Route;
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;

use super::{Check, Environment};
use crate::config::{Config, Webhook};
use crate::discord::gateway::message_content_allowed;
use crate::discord::permissions::channel_permissions;
use crate::discord::{Discord, SendError, codes};

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

/// The Discord checks, in order; without a token, the webhook's (or why there is neither).
pub(super) async fn checks(config: &Config, env: &Environment) -> Vec<Check> {
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
    let api = Discord::interactive(Some(token), &config.api);
    let origin = config.api.origin();
    let bot = match api.get_json::<Value>(&Route::GetCurrentUser).await {
        Ok(user) => {
            let name = user["username"].as_str().unwrap_or("?");
            let id = user["id"].as_str().unwrap_or("?").to_owned();
            checks.push(Check::ok("token", format!("accepted by {origin}: bot {name} ({id})")));
            id
        }
        Err(SendError::Unauthorized) => {
            checks.push(Check::fail(
                "token",
                format!("{origin} refused the bot token (HTTP 401)"),
                "reset the token (Developer Portal → your application → Bot → Reset Token), write the new one \
                 into your token file, then restart the sidecar (`omp-discord stop`)",
            ));
            return checks;
        }
        Err(err) => {
            checks.push(Check::fail(
                "token",
                format!("cannot check the token at {origin}: {err}"),
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
    checks.push(match api.get_json::<Value>(&Route::GetCurrentUserApplicationInfo).await {
        Ok(application) => {
            if message_content_allowed(&application) {
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
async fn webhook_check(config: &Config, webhook: &Webhook) -> Check {
    const NAME: &str = "webhook";
    let api = Discord::interactive(None, &config.api);
    let route = Route::GetWebhook { token: Some(webhook.token()), webhook_id: webhook.id.get() };
    match api.get_json::<Value>(&route).await {
        Ok(found) => Check::ok(
            NAME,
            format!(
                "webhook {:?} ({}) posts to channel {}",
                found["name"].as_str().unwrap_or("?"),
                webhook.id,
                found["channel_id"].as_str().unwrap_or("?")
            ),
        ),
        Err(SendError::Rejected { status: 404 | 401, .. } | SendError::Unauthorized) => Check::fail(
            NAME,
            format!(
                "{} does not know webhook {} any more (deleted, or its URL is incomplete)",
                config.api.origin(),
                webhook.id
            ),
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
async fn project_checks(config: &Config, api: &Discord, bot: &str) -> Vec<Check> {
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
    api: &Discord,
    name: &'static str,
    key: &str,
    channel: Id<ChannelMarker>,
    bot: &str,
    threads: bool,
) -> Check {
    let grant = "open the channel's settings → Permissions, add the bot (or one of its roles) and allow \
                 View Channel, Send Messages, Embed Links, Read Message History, Create Public Threads and \
                 Send Messages in Threads";
    let found = match api.get_json::<Value>(&Route::GetChannel { channel_id: channel.get() }).await {
        Ok(found) => found,
        Err(SendError::Rejected { code: codes::UNKNOWN_CHANNEL, .. } | SendError::Rejected { status: 404, .. }) => {
            return Check::fail(
                name,
                format!("channel {channel} does not exist (Unknown Channel)"),
                format!(
                    "copy the id again: Developer Mode on, right-click the channel → Copy Channel ID, and set {key}"
                ),
            );
        }
        Err(SendError::Rejected { code: codes::MISSING_ACCESS, .. } | SendError::Rejected { status: 403, .. }) => {
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
    let member = api.get_json::<Value>(&Route::GetMember { guild_id: guild, user_id: bot_id }).await;
    let roles = api.get_json::<Value>(&Route::GetGuildRoles { guild_id: guild }).await;
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
