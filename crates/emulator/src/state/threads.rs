//! Threads: creating one (THREAD_CREATE), unarchiving on activity, thread member objects.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::World;
use crate::model::Channel;
use crate::snowflake::now_ms;

/// A thread to create with [`World::create_thread`].
#[derive(Debug)]
pub(crate) struct NewThread {
    pub(crate) id: u64,
    pub(crate) kind: u8,
    pub(crate) name: String,
    pub(crate) owner_id: u64,
    pub(crate) auto_archive_duration: u64,
    pub(crate) applied_tags: Vec<u64>,
    pub(crate) invitable: bool,
}

impl World {
    /// Sending into an archived (unlocked) thread unarchives it, as on Discord.
    pub(super) fn unarchive_on_activity(&mut self, channel_id: u64) {
        let Some(channel) = self.channels.get_mut(&channel_id) else {
            return;
        };
        if let Some(thread) = channel.thread.as_mut()
            && thread.archived
        {
            thread.archived = false;
            thread.archive_ms = now_ms();
            let json = channel.to_json();
            self.dispatch("THREAD_UPDATE", json);
        }
    }

    /// Creates a thread channel and dispatches THREAD_CREATE (with `newly_created`).
    pub(crate) fn create_thread(&mut self, parent: &Channel, new: NewThread) -> Value {
        let NewThread { id, kind, name, owner_id, auto_archive_duration, applied_tags, invitable } = new;
        let mut members = BTreeMap::new();
        members.insert(owner_id, now_ms());
        let channel = Channel {
            id,
            kind,
            guild_id: parent.guild_id,
            name,
            parent_id: Some(parent.id),
            topic: None,
            position: 0,
            overwrites: Vec::new(),
            last_message_id: None,
            rate_limit_per_user: 0,
            thread: Some(crate::model::ThreadMeta {
                owner_id,
                archived: false,
                locked: false,
                invitable,
                auto_archive_duration,
                archive_ms: now_ms(),
                members,
                message_count: 0,
                total_message_sent: 0,
                applied_tags,
            }),
            recipients: Vec::new(),
            flags: 0,
            available_tags: Vec::new(),
        };
        let json = channel.to_json();
        self.channels.insert(id, channel);
        let mut event = json.clone();
        event["newly_created"] = json!(true);
        if owner_id == self.bot_id {
            event["member"] = thread_member_json(id, owner_id, now_ms());
        }
        self.dispatch("THREAD_CREATE", event);
        json
    }
}

/// A thread member object.
pub(crate) fn thread_member_json(thread_id: u64, user_id: u64, joined_ms: u64) -> Value {
    json!({
        "id": thread_id.to_string(),
        "user_id": user_id.to_string(),
        "join_timestamp": crate::snowflake::iso8601(joined_ms),
        "flags": 1,
    })
}
