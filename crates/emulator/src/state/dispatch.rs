//! Gateway sessions and the dispatches each one sees: intents, shards, and message content
//! emptied without the MESSAGE_CONTENT intent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::World;
use crate::config::permissions;

/// How many dispatches a session keeps for RESUME.
const SESSION_BUFFER: usize = 10_000;
/// How long a disconnected session stays resumable.
const SESSION_RESUME_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Gateway intents the emulator filters on.
pub(crate) mod intents {
    pub(crate) const GUILDS: u64 = 1 << 0;
    pub(crate) const GUILD_MEMBERS: u64 = 1 << 1;
    pub(crate) const GUILD_MESSAGES: u64 = 1 << 9;
    pub(crate) const GUILD_MESSAGE_REACTIONS: u64 = 1 << 10;
    pub(crate) const GUILD_MESSAGE_TYPING: u64 = 1 << 11;
    pub(crate) const DIRECT_MESSAGES: u64 = 1 << 12;
    pub(crate) const DIRECT_MESSAGE_REACTIONS: u64 = 1 << 13;
    pub(crate) const DIRECT_MESSAGE_TYPING: u64 = 1 << 14;
    pub(crate) const MESSAGE_CONTENT: u64 = 1 << 15;
    pub(crate) const PRIVILEGED: u64 = GUILD_MEMBERS | (1 << 8) | MESSAGE_CONTENT;
    pub(crate) const ALL: u64 = (1 << 26) - 1;
}

/// A gateway session that can be resumed.
pub(crate) struct Session {
    pub(crate) intents: u64,
    pub(crate) shard: [u64; 2],
    pub(crate) seq: u64,
    pub(crate) events: VecDeque<(u64, Arc<str>)>,
    pub(crate) notify: Arc<Notify>,
    /// The connection currently attached (a counter), if any.
    pub(crate) attached: Option<u64>,
    pub(crate) detached_at: Option<Instant>,
}

impl Session {
    pub(crate) fn events_after(&self, seq: u64) -> Vec<(u64, Arc<str>)> {
        self.events.iter().filter(|(s, _)| *s > seq).cloned().collect()
    }
}

impl World {
    /// Queues a dispatch for every session that may see it, then wakes their connections.
    pub(crate) fn dispatch(&mut self, name: &str, data: Value) {
        let now = Instant::now();
        self.sessions.retain(|_, s| {
            s.attached.is_some() || s.detached_at.is_none_or(|at| now.duration_since(at) < SESSION_RESUME_WINDOW)
        });
        // The bot gets no message, typing or reaction events from channels it cannot see.
        let channel_event = name.starts_with("MESSAGE_") || name == "TYPING_START";
        if channel_event
            && let Some(channel_id) = data["channel_id"].as_str().and_then(|c| c.parse::<u64>().ok())
            && self.permissions(self.bot_id, channel_id) & permissions::VIEW_CHANNEL == 0
        {
            return;
        }
        let guild_id = data["guild_id"]
            .as_str()
            .and_then(|g| g.parse::<u64>().ok())
            .or_else(|| (name == "GUILD_CREATE").then(|| data["id"].as_str()?.parse().ok()).flatten());
        for session in self.sessions.values_mut() {
            if let Some(guild_id) = guild_id
                && (guild_id >> 22) % session.shard[1].max(1) != session.shard[0]
            {
                continue;
            }
            let Some(payload) = visible(name, &data, guild_id, session.intents, self.bot_id) else {
                continue;
            };
            session.seq += 1;
            let frame = json!({"op": 0, "t": name, "s": session.seq, "d": payload}).to_string();
            session.events.push_back((session.seq, frame.into()));
            if session.events.len() > SESSION_BUFFER {
                session.events.pop_front();
            }
            session.notify.notify_one();
        }
    }
}

/// The payload a session with `intents` sees for this dispatch, or `None` if it sees none.
fn visible(name: &str, data: &Value, guild_id: Option<u64>, intents: u64, bot_id: u64) -> Option<Value> {
    use self::intents::*;
    let in_guild = guild_id.is_some();
    let needed = match name {
        "MESSAGE_CREATE" | "MESSAGE_UPDATE" | "MESSAGE_DELETE" | "MESSAGE_DELETE_BULK" => {
            if in_guild {
                GUILD_MESSAGES
            } else {
                DIRECT_MESSAGES
            }
        }
        "MESSAGE_REACTION_ADD" | "MESSAGE_REACTION_REMOVE" => {
            if in_guild {
                GUILD_MESSAGE_REACTIONS
            } else {
                DIRECT_MESSAGE_REACTIONS
            }
        }
        "TYPING_START" => {
            if in_guild {
                GUILD_MESSAGE_TYPING
            } else {
                DIRECT_MESSAGE_TYPING
            }
        }
        "GUILD_CREATE"
        | "CHANNEL_CREATE"
        | "CHANNEL_UPDATE"
        | "CHANNEL_DELETE"
        | "THREAD_CREATE"
        | "THREAD_UPDATE"
        | "THREAD_DELETE"
        | "THREAD_LIST_SYNC"
        | "THREAD_MEMBER_UPDATE" => GUILDS,
        "THREAD_MEMBERS_UPDATE" => GUILDS | GUILD_MEMBERS,
        _ => 0,
    };
    if intents & needed != needed {
        // THREAD_MEMBERS_UPDATE without GUILD_MEMBERS still arrives for the bot itself.
        if name != "THREAD_MEMBERS_UPDATE" || intents & GUILDS == 0 {
            return None;
        }
    }
    let mut payload = data.clone();
    if matches!(name, "MESSAGE_CREATE" | "MESSAGE_UPDATE")
        && intents & MESSAGE_CONTENT == 0
        && in_guild
        && data["author"]["id"].as_str() != Some(&bot_id.to_string())
        && !data["mentions"].as_array().is_some_and(|m| m.iter().any(|u| u["id"].as_str() == Some(&bot_id.to_string())))
    {
        // Without MESSAGE_CONTENT, guild messages that neither come from nor mention the bot
        // arrive with their content fields emptied.
        payload["content"] = json!("");
        for key in ["embeds", "attachments", "components"] {
            payload[key] = json!([]);
        }
        if let Some(object) = payload.as_object_mut() {
            object.remove("poll");
        }
    }
    Some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_content_needs_the_intent_unless_the_bot_is_mentioned() {
        let bot = 5;
        let message = json!({"author": {"id": "7"}, "content": "hi", "mentions": [], "embeds": [{"title": "x"}], "guild_id": "1"});
        let plain = visible("MESSAGE_CREATE", &message, Some(1), intents::GUILD_MESSAGES, bot).unwrap();
        assert_eq!(plain["content"], "");
        assert_eq!(plain["embeds"], json!([]));
        let full =
            visible("MESSAGE_CREATE", &message, Some(1), intents::GUILD_MESSAGES | intents::MESSAGE_CONTENT, bot)
                .unwrap();
        assert_eq!(full["content"], "hi");
        let mut mention = message.clone();
        mention["mentions"] = json!([{"id": "5"}]);
        assert_eq!(
            visible("MESSAGE_CREATE", &mention, Some(1), intents::GUILD_MESSAGES, bot).unwrap()["content"],
            "hi"
        );
        assert!(visible("MESSAGE_CREATE", &message, Some(1), intents::GUILDS, bot).is_none());
        // DMs keep content without the intent.
        assert_eq!(visible("MESSAGE_CREATE", &message, None, intents::DIRECT_MESSAGES, bot).unwrap()["content"], "hi");
    }
}
