//! The objects the emulator keeps, and their JSON shapes as Discord sends them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::snowflake::{iso8601, unix_ms_of};

/// A user or bot account.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) id: u64,
    pub(crate) username: String,
    pub(crate) global_name: Option<String>,
    pub(crate) bot: bool,
}

impl User {
    pub(crate) fn to_json(&self) -> Value {
        let mut user = json!({
            "id": self.id.to_string(),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": null,
            "avatar_decoration_data": null,
            "banner": null,
            "accent_color": null,
            "public_flags": 0,
            "flags": 0,
            "primary_guild": null,
            "collectibles": null,
        });
        if self.bot {
            user["bot"] = json!(true);
        }
        user
    }
}

/// A guild role.
#[derive(Clone, Debug)]
pub(crate) struct Role {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) permissions: u64,
    pub(crate) color: u32,
    pub(crate) position: i64,
    pub(crate) managed: bool,
}

impl Role {
    pub(crate) fn to_json(&self, bot_id: u64) -> Value {
        let mut role = json!({
            "id": self.id.to_string(),
            "name": self.name,
            "description": null,
            "permissions": self.permissions.to_string(),
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": null, "tertiary_color": null},
            "position": self.position,
            "hoist": false,
            "managed": self.managed,
            "mentionable": false,
            "icon": null,
            "unicode_emoji": null,
            "flags": 0,
        });
        if self.managed {
            role["tags"] = json!({ "bot_id": bot_id.to_string() });
        }
        role
    }
}

/// A guild member.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub(crate) roles: Vec<u64>,
    pub(crate) nick: Option<String>,
    pub(crate) joined_ms: u64,
}

impl Member {
    /// The member object without `user` (as in MESSAGE_CREATE).
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "roles": self.roles.iter().map(u64::to_string).collect::<Vec<_>>(),
            "nick": self.nick,
            "avatar": null,
            "banner": null,
            "joined_at": iso8601(self.joined_ms),
            "premium_since": null,
            "deaf": false,
            "mute": false,
            "flags": 0,
            "pending": false,
            "communication_disabled_until": null,
        })
    }
}

/// A guild.
#[derive(Clone, Debug)]
pub(crate) struct Guild {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) owner_id: u64,
    pub(crate) roles: Vec<Role>,
    pub(crate) members: BTreeMap<u64, Member>,
}

impl Guild {
    pub(crate) fn to_json(&self, bot_id: u64) -> Value {
        json!({
            "id": self.id.to_string(),
            "name": self.name,
            "icon": null,
            "icon_hash": null,
            "home_header": null,
            "region": "deprecated",
            "widget_channel_id": null,
            "max_presences": null,
            "nsfw": false,
            "incidents_data": null,
            "splash": null,
            "discovery_splash": null,
            "owner_id": self.owner_id.to_string(),
            "afk_channel_id": null,
            "afk_timeout": 300,
            "widget_enabled": false,
            "verification_level": 0,
            "default_message_notifications": 1,
            "explicit_content_filter": 0,
            "roles": self.roles.iter().map(|r| r.to_json(bot_id)).collect::<Vec<_>>(),
            "emojis": [],
            "stickers": [],
            "features": [],
            "mfa_level": 0,
            "application_id": null,
            "system_channel_id": null,
            "system_channel_flags": 0,
            "rules_channel_id": null,
            "public_updates_channel_id": null,
            "safety_alerts_channel_id": null,
            "max_members": 500_000,
            "vanity_url_code": null,
            "description": null,
            "banner": null,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "premium_progress_bar_enabled": false,
            "preferred_locale": "en-US",
            "nsfw_level": 0,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
        })
    }
}

/// A permission overwrite on a channel.
#[derive(Clone, Debug)]
pub(crate) struct Overwrite {
    pub(crate) id: u64,
    pub(crate) kind: u8,
    pub(crate) allow: u64,
    pub(crate) deny: u64,
}

/// Thread state, present on thread channels (types 10, 11, 12).
#[derive(Clone, Debug)]
pub(crate) struct ThreadMeta {
    pub(crate) owner_id: u64,
    pub(crate) archived: bool,
    pub(crate) locked: bool,
    pub(crate) invitable: bool,
    pub(crate) auto_archive_duration: u64,
    pub(crate) archive_ms: u64,
    pub(crate) members: BTreeMap<u64, u64>,
    pub(crate) message_count: u64,
    pub(crate) total_message_sent: u64,
    pub(crate) applied_tags: Vec<u64>,
}

/// Channel types that are threads.
pub(crate) fn is_thread(kind: u8) -> bool {
    matches!(kind, 10..=12)
}

/// A guild channel, thread or DM.
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub(crate) id: u64,
    pub(crate) kind: u8,
    pub(crate) guild_id: Option<u64>,
    pub(crate) name: String,
    pub(crate) parent_id: Option<u64>,
    pub(crate) topic: Option<String>,
    pub(crate) position: i64,
    pub(crate) overwrites: Vec<Overwrite>,
    pub(crate) last_message_id: Option<u64>,
    pub(crate) rate_limit_per_user: u64,
    pub(crate) thread: Option<ThreadMeta>,
    pub(crate) recipients: Vec<u64>,
    /// Channel flags (`REQUIRE_TAG` on a forum).
    pub(crate) flags: u64,
    /// A forum's tags.
    pub(crate) available_tags: Vec<ForumTag>,
}

/// A forum tag.
#[derive(Clone, Debug)]
pub(crate) struct ForumTag {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) moderated: bool,
}

impl Channel {
    pub(crate) fn is_thread(&self) -> bool {
        is_thread(self.kind)
    }

    pub(crate) fn to_json(&self) -> Value {
        let id = |v: Option<u64>| v.map(|v| v.to_string());
        let mut channel = json!({
            "id": self.id.to_string(),
            "type": self.kind,
            "last_message_id": id(self.last_message_id),
            "flags": self.flags,
        });
        let object = channel.as_object_mut().expect("built as an object");
        if let Some(guild_id) = self.guild_id {
            object.insert("guild_id".into(), json!(guild_id.to_string()));
            object.insert("name".into(), json!(self.name));
            object.insert("parent_id".into(), json!(id(self.parent_id)));
            object.insert("rate_limit_per_user".into(), json!(self.rate_limit_per_user));
        }
        if let Some(thread) = &self.thread {
            object.insert("owner_id".into(), json!(thread.owner_id.to_string()));
            object.insert("message_count".into(), json!(thread.message_count));
            object.insert("member_count".into(), json!(thread.members.len().min(50)));
            object.insert("total_message_sent".into(), json!(thread.total_message_sent));
            object.insert(
                "applied_tags".into(),
                json!(thread.applied_tags.iter().map(u64::to_string).collect::<Vec<_>>()),
            );
            let mut metadata = json!({
                "archived": thread.archived,
                "auto_archive_duration": thread.auto_archive_duration,
                "archive_timestamp": iso8601(thread.archive_ms),
                "locked": thread.locked,
                "create_timestamp": iso8601(unix_ms_of(self.id)),
            });
            if self.kind == 12 {
                metadata["invitable"] = json!(thread.invitable);
            }
            object.insert("thread_metadata".into(), metadata);
        } else if self.guild_id.is_some() {
            object.insert("position".into(), json!(self.position));
            object.insert(
                "permission_overwrites".into(),
                json!(
                    self.overwrites
                        .iter()
                        .map(|o| json!({
                            "id": o.id.to_string(),
                            "type": o.kind,
                            "allow": o.allow.to_string(),
                            "deny": o.deny.to_string(),
                        }))
                        .collect::<Vec<_>>()
                ),
            );
            object.insert("nsfw".into(), json!(false));
            if matches!(self.kind, 0 | 5 | 15) {
                object.insert("topic".into(), json!(self.topic));
                object.insert("default_auto_archive_duration".into(), json!(4320));
                object.insert("default_thread_rate_limit_per_user".into(), json!(0));
            }
            if self.kind == 15 {
                let tags: Vec<Value> = self
                    .available_tags
                    .iter()
                    .map(|t| {
                        json!({
                            "id": t.id.to_string(),
                            "name": t.name,
                            "moderated": t.moderated,
                            "emoji_id": null,
                            "emoji_name": null,
                        })
                    })
                    .collect();
                object.insert("available_tags".into(), json!(tags));
                object.insert("default_reaction_emoji".into(), Value::Null);
                object.insert("default_sort_order".into(), Value::Null);
                object.insert("default_forum_layout".into(), json!(0));
            }
        }
        channel
    }
}

/// Who wrote a message.
#[derive(Clone, Debug)]
pub(crate) enum Author {
    /// A user or bot account.
    User(u64),
    /// A webhook, possibly with a per-message name.
    Webhook { id: u64, name: String },
}

/// A reaction on a message.
#[derive(Clone, Debug)]
pub(crate) struct Reaction {
    /// Unicode emoji, or `name:id` for a custom one.
    pub(crate) emoji: String,
    pub(crate) users: BTreeSet<u64>,
}

impl Reaction {
    pub(crate) fn emoji_json(&self) -> Value {
        match self.emoji.split_once(':') {
            Some((name, id)) => json!({ "id": id, "name": name }),
            None => json!({ "id": null, "name": self.emoji }),
        }
    }
}

/// A message.
#[derive(Clone, Debug)]
pub(crate) struct Message {
    pub(crate) id: u64,
    pub(crate) channel_id: u64,
    pub(crate) guild_id: Option<u64>,
    pub(crate) author: Author,
    pub(crate) content: String,
    pub(crate) edited_ms: Option<u64>,
    pub(crate) tts: bool,
    pub(crate) mention_everyone: bool,
    pub(crate) mentions: Vec<u64>,
    pub(crate) mention_roles: Vec<u64>,
    pub(crate) attachments: Vec<Value>,
    pub(crate) embeds: Vec<Value>,
    pub(crate) components: Vec<Value>,
    pub(crate) pinned: bool,
    pub(crate) kind: u8,
    pub(crate) flags: u64,
    pub(crate) nonce: Option<Value>,
    pub(crate) application_id: Option<u64>,
    pub(crate) message_reference: Option<Value>,
    pub(crate) interaction_metadata: Option<Value>,
    pub(crate) thread_id: Option<u64>,
    pub(crate) position: Option<u64>,
    pub(crate) reactions: Vec<Reaction>,
    pub(crate) allowed_mentions: Option<Value>,
}

/// Lookups a message needs to render itself.
pub(crate) trait Directory {
    fn user_json(&self, id: u64) -> Value;
    fn channel_json(&self, id: u64) -> Option<Value>;
}

impl Message {
    pub(crate) fn author_id(&self) -> u64 {
        match &self.author {
            Author::User(id) | Author::Webhook { id, .. } => *id,
        }
    }

    /// The message object. `viewer` decides `reactions[].me`.
    pub(crate) fn to_json(&self, directory: &dyn Directory, viewer: u64) -> Value {
        let author = match &self.author {
            Author::User(id) => directory.user_json(*id),
            Author::Webhook { id, name } => json!({
                "id": id.to_string(),
                "username": name,
                "discriminator": "0000",
                "avatar": null,
                "bot": true,
                "global_name": null,
                "public_flags": 0,
                "flags": 0,
                "primary_guild": null,
            }),
        };
        let mut message = json!({
            "id": self.id.to_string(),
            "channel_id": self.channel_id.to_string(),
            "author": author,
            "content": self.content,
            "timestamp": iso8601(unix_ms_of(self.id)),
            "edited_timestamp": self.edited_ms.map(iso8601),
            "tts": self.tts,
            "mention_everyone": self.mention_everyone,
            "mentions": self.mentions.iter().map(|id| directory.user_json(*id)).collect::<Vec<_>>(),
            "mention_roles": self.mention_roles.iter().map(u64::to_string).collect::<Vec<_>>(),
            "attachments": self.attachments,
            "embeds": self.embeds,
            "components": self.components,
            "pinned": self.pinned,
            "type": self.kind,
            "flags": self.flags,
        });
        let object = message.as_object_mut().expect("built as an object");
        if let Author::Webhook { id, .. } = &self.author {
            object.insert("webhook_id".into(), json!(id.to_string()));
        }
        if let Some(application_id) = self.application_id {
            object.insert("application_id".into(), json!(application_id.to_string()));
        }
        if let Some(reference) = &self.message_reference {
            object.insert("message_reference".into(), reference.clone());
        }
        if let Some(metadata) = &self.interaction_metadata {
            object.insert("interaction_metadata".into(), metadata.clone());
        }
        if let Some(position) = self.position {
            object.insert("position".into(), json!(position));
        }
        if let Some(thread) = self.thread_id.and_then(|id| directory.channel_json(id)) {
            object.insert("thread".into(), thread);
        }
        if !self.reactions.is_empty() {
            let reactions: Vec<Value> = self
                .reactions
                .iter()
                .map(|r| {
                    json!({
                        "emoji": r.emoji_json(),
                        "count": r.users.len(),
                        "count_details": {"burst": 0, "normal": r.users.len()},
                        "burst_colors": [],
                        "me": r.users.contains(&viewer),
                        "me_burst": false,
                        "burst_me": false,
                        "burst_count": 0,
                    })
                })
                .collect();
            object.insert("reactions".into(), json!(reactions));
        }
        message
    }
}

/// A channel webhook.
#[derive(Clone, Debug)]
pub(crate) struct Webhook {
    pub(crate) id: u64,
    pub(crate) token: String,
    pub(crate) channel_id: u64,
    pub(crate) guild_id: Option<u64>,
    pub(crate) name: String,
    pub(crate) creator_id: u64,
    pub(crate) application_id: u64,
}

impl Webhook {
    pub(crate) fn to_json(&self, directory: &dyn Directory, with_token: bool) -> Value {
        let mut hook = json!({
            "id": self.id.to_string(),
            "type": 1,
            "guild_id": self.guild_id.map(|g| g.to_string()),
            "channel_id": self.channel_id.to_string(),
            "name": self.name,
            "avatar": null,
            "application_id": self.application_id.to_string(),
            "user": directory.user_json(self.creator_id),
        });
        if with_token {
            hook["token"] = json!(self.token);
        }
        hook
    }
}
