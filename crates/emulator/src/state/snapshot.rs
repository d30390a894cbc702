//! Everything the world holds as JSON, for `GET /_emulator/state` and the web view.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::World;
use crate::interaction::Interaction;
use crate::model::{Channel, Directory, User};

impl World {
    /// Everything, for `GET /_emulator/state` and the web view.
    pub(crate) fn snapshot(&self) -> Value {
        let guilds: Vec<Value> = self
            .guilds
            .values()
            .map(|g| {
                let mut json = g.to_json(self.bot_id);
                json["members"] = json!(
                    g.members
                        .iter()
                        .map(|(id, m)| {
                            let mut member = m.to_json();
                            member["user"] = self.user_json(*id);
                            member
                        })
                        .collect::<Vec<_>>()
                );
                json
            })
            .collect();
        let (threads, channels): (Vec<&Channel>, Vec<&Channel>) = self.channels.values().partition(|c| c.is_thread());
        let messages: BTreeMap<String, Vec<Value>> = self
            .messages
            .iter()
            .map(|(channel, messages)| {
                (channel.to_string(), messages.values().map(|m| self.message_state_json(m)).collect())
            })
            .collect();
        let thread_members: BTreeMap<String, Vec<String>> = threads
            .iter()
            .map(|t| {
                (
                    t.id.to_string(),
                    t.thread.as_ref().map(|m| m.members.keys().map(u64::to_string).collect()).unwrap_or_default(),
                )
            })
            .collect();
        json!({
            "application": {"id": self.application_id.to_string(), "name": self.application_name},
            "bot": self.bot_json(),
            "users": self.users.values().map(User::to_json).collect::<Vec<_>>(),
            "guilds": guilds,
            "channels": channels.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
            "threads": threads.iter().map(|c| c.to_json()).collect::<Vec<_>>(),
            "thread_members": thread_members,
            "messages": messages,
            "webhooks": self.webhooks.values().map(|w| w.to_json(self, false)).collect::<Vec<_>>(),
            "commands": self.commands.values().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
            "interactions": self.interactions.values().map(Interaction::to_state_json).collect::<Vec<_>>(),
            "typing": self.typing,
            "gateway": {
                "identify_count": self.identify_count,
                "sessions": self.sessions.len(),
                "connected": self.sessions.values().filter(|s| s.attached.is_some()).count(),
                // Which connection serves each session: it changes when a client resumes on a new one.
                "connections": self.sessions.values().filter_map(|s| s.attached.map(|c| c.to_string())).collect::<Vec<_>>(),
            },
        })
    }
}
