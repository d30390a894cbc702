//! The `World`: everything `reset` puts back to the seed, and how it is built from the seed.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};
use tokio::time::Instant;

use super::Session;
use super::messages::NonceEntry;
use crate::config::{Seed, permissions};
use crate::interaction::Interaction;
use crate::model::{Channel, Directory, ForumTag, Guild, Member, Message, Overwrite, Role, User, Webhook};
use crate::snowflake::{SnowflakeGenerator, unix_ms_of};

/// Everything that `reset` puts back to the seed.
pub(crate) struct World {
    pub(crate) bot_id: u64,
    pub(crate) application_id: u64,
    pub(crate) application_name: String,
    pub(crate) application_owner: u64,
    pub(crate) users: BTreeMap<u64, User>,
    pub(crate) guilds: BTreeMap<u64, Guild>,
    pub(crate) channels: BTreeMap<u64, Channel>,
    pub(crate) messages: HashMap<u64, BTreeMap<u64, Message>>,
    pub(super) nonces: HashMap<(u64, String), NonceEntry>,
    pub(crate) webhooks: BTreeMap<u64, Webhook>,
    /// Application commands: id → (guild id or None for global, command object).
    pub(crate) commands: BTreeMap<u64, (Option<u64>, Value)>,
    pub(crate) interactions: HashMap<u64, Interaction>,
    pub(crate) sessions: HashMap<String, Session>,
    pub(crate) identify_count: u64,
    pub(crate) last_identify: Option<Instant>,
    pub(crate) typing: Vec<Value>,
}

impl Directory for World {
    fn user_json(&self, id: u64) -> Value {
        self.users.get(&id).map_or_else(
            || json!({"id": id.to_string(), "username": "unknown", "discriminator": "0", "global_name": null, "avatar": null}),
            User::to_json,
        )
    }

    fn channel_json(&self, id: u64) -> Option<Value> {
        self.channels.get(&id).map(Channel::to_json)
    }
}

impl World {
    pub(super) fn from_seed(seed: &Seed, ids: &SnowflakeGenerator) -> Self {
        let user = |u: &crate::config::SeedUser| User {
            id: u.id,
            username: u.username.clone(),
            global_name: u.global_name.clone(),
            bot: u.bot,
        };
        let mut users: BTreeMap<u64, User> = seed.users.iter().map(|u| (u.id, user(u))).collect();
        users.insert(seed.bot.id, user(&seed.bot));
        let mut guilds = BTreeMap::new();
        let mut channels = BTreeMap::new();
        for g in &seed.guilds {
            let mut roles: Vec<Role> = g
                .roles
                .iter()
                .map(|r| Role {
                    id: r.id,
                    name: r.name.clone(),
                    permissions: r.permissions,
                    color: r.color,
                    position: r.position,
                    managed: r.managed,
                })
                .collect();
            if !roles.iter().any(|r| r.id == g.id) {
                roles.insert(
                    0,
                    Role {
                        id: g.id,
                        name: "@everyone".to_owned(),
                        permissions: permissions::MEMBER_DEFAULT,
                        color: 0,
                        position: 0,
                        managed: false,
                    },
                );
            }
            let joined_ms = unix_ms_of(g.id);
            let mut members: BTreeMap<u64, Member> = g
                .members
                .iter()
                .map(|m| (m.user_id, Member { roles: m.roles.clone(), nick: m.nick.clone(), joined_ms }))
                .collect();
            if g.bot_invited {
                members.entry(seed.bot.id).or_insert(Member { roles: Vec::new(), nick: None, joined_ms });
            }
            members.entry(g.owner_id).or_insert(Member { roles: Vec::new(), nick: None, joined_ms });
            guilds.insert(g.id, Guild { id: g.id, name: g.name.clone(), owner_id: g.owner_id, roles, members });
            for c in &g.channels {
                channels.insert(
                    c.id,
                    Channel {
                        id: c.id,
                        kind: c.kind,
                        guild_id: Some(g.id),
                        name: c.name.clone(),
                        parent_id: c.parent_id,
                        topic: c.topic.clone(),
                        position: c.position,
                        overwrites: c
                            .permission_overwrites
                            .iter()
                            .map(|o| Overwrite { id: o.id, kind: o.kind, allow: o.allow, deny: o.deny })
                            .collect(),
                        last_message_id: None,
                        rate_limit_per_user: 0,
                        thread: None,
                        recipients: Vec::new(),
                        flags: c.flags,
                        available_tags: c
                            .available_tags
                            .iter()
                            .map(|t| ForumTag { id: t.id, name: t.name.clone(), moderated: t.moderated })
                            .collect(),
                    },
                );
            }
        }
        // Seeds describe no history; the generator only needs to be ahead of seeded ids.
        let _ = ids;
        Self {
            bot_id: seed.bot.id,
            application_id: seed.application.id,
            application_name: seed.application.name.clone(),
            application_owner: seed.application.owner_id,
            users,
            guilds,
            channels,
            messages: HashMap::new(),
            nonces: HashMap::new(),
            webhooks: BTreeMap::new(),
            commands: BTreeMap::new(),
            interactions: HashMap::new(),
            sessions: HashMap::new(),
            identify_count: 0,
            last_identify: None,
            typing: Vec::new(),
        }
    }

    pub(crate) fn bot_json(&self) -> Value {
        let mut user = self.user_json(self.bot_id);
        let object = user.as_object_mut().expect("users are objects");
        object.insert("verified".into(), json!(true));
        object.insert("mfa_enabled".into(), json!(false));
        object.insert("locale".into(), json!("en-US"));
        object.insert("email".into(), Value::Null);
        object.insert("premium_type".into(), json!(0));
        object.insert("bio".into(), json!(""));
        user
    }
}
