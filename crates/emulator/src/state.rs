//! The emulator's in-memory world and the operations REST, the control API and the web view
//! share.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

use crate::config::{EmulatorConfig, Seed, permissions};
use crate::error::ApiError;
use crate::fault::{Faults, GatewayFault};
use crate::interaction::Interaction;
use crate::model::{Author, Channel, Directory, ForumTag, Guild, Member, Message, Overwrite, Role, User, Webhook};
use crate::ratelimit::RateLimits;
use crate::record::RecordedRequest;
use crate::snowflake::{SnowflakeGenerator, now_ms, unix_ms_of};
use crate::validate;

/// How long a repeated `nonce` with `enforce_nonce` returns the first message.
const NONCE_WINDOW: Duration = Duration::from_secs(5 * 60);
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

/// Shared handle to the emulator: cheap to clone, safe to use from any task.
#[derive(Clone)]
pub struct EmulatorState {
    pub(crate) inner: Arc<Shared>,
}

impl std::fmt::Debug for EmulatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmulatorState").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

pub(crate) struct Shared {
    pub(crate) config: EmulatorConfig,
    pub(crate) ids: SnowflakeGenerator,
    world: Mutex<World>,
    pub(crate) recorder: Mutex<VecDeque<RecordedRequest>>,
    pub(crate) limits: Mutex<RateLimits>,
    pub(crate) faults: Mutex<Faults>,
    pub(crate) gateway_faults: broadcast::Sender<GatewayFault>,
    /// `host:port` the server listens on, for `resume_gateway_url` and attachment URLs.
    pub(crate) public_host: Mutex<Option<String>>,
    /// Wakes web view clients when anything changes.
    pub(crate) changed: broadcast::Sender<()>,
    /// Uploaded files' bytes by attachment id.
    pub(crate) files: Mutex<std::collections::HashMap<u64, axum::body::Bytes>>,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test must not wedge every later request: the data stays usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl EmulatorState {
    /// A fresh world built from `config.seed`.
    pub fn new(config: EmulatorConfig) -> Self {
        let ids = SnowflakeGenerator::default();
        let world = World::from_seed(&config.seed, &ids);
        let limits = RateLimits::new(config.invalid_request_limit);
        Self {
            inner: Arc::new(Shared {
                config,
                ids,
                world: Mutex::new(world),
                recorder: Mutex::new(VecDeque::new()),
                limits: Mutex::new(limits),
                faults: Mutex::new(Faults::default()),
                gateway_faults: broadcast::channel(64).0,
                public_host: Mutex::new(None),
                changed: broadcast::channel(16).0,
                files: Mutex::new(std::collections::HashMap::new()),
            }),
        }
    }

    /// The configuration the emulator runs with.
    pub fn config(&self) -> &EmulatorConfig {
        &self.inner.config
    }

    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.inner.world)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.inner.ids.next()
    }

    pub(crate) fn touch(&self) {
        let _ = self.inner.changed.send(());
    }

    pub(crate) fn keep_file(&self, attachment_id: u64, data: axum::body::Bytes) {
        lock(&self.inner.files).insert(attachment_id, data);
    }

    /// The bytes of an uploaded attachment (also served at its `url`).
    pub fn attachment(&self, attachment_id: u64) -> Option<Vec<u8>> {
        lock(&self.inner.files).get(&attachment_id).map(|data| data.to_vec())
    }

    /// Every request made to `/api/…` so far (the same list as `GET /_emulator/requests`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.recorder).iter().cloned().collect()
    }

    /// Everything the emulator holds (the same JSON as `GET /_emulator/state`): guilds,
    /// channels, threads, messages per channel, webhooks, commands and gateway counters.
    pub fn snapshot(&self) -> Value {
        self.world().snapshot()
    }

    /// The messages of a channel or thread, oldest first, as Discord's message objects
    /// (plus `allowed_mentions` as sent).
    pub fn messages(&self, channel_id: u64) -> Vec<Value> {
        let world = self.world();
        world
            .messages
            .get(&channel_id)
            .map(|messages| messages.values().map(|m| world.message_state_json(m)).collect())
            .unwrap_or_default()
    }

    /// A channel or thread as Discord's channel object.
    pub fn channel(&self, channel_id: u64) -> Option<Value> {
        self.world().channels.get(&channel_id).map(Channel::to_json)
    }

    /// How many IDENTIFYs the gateway has accepted.
    pub fn identify_count(&self) -> u64 {
        self.world().identify_count
    }

    /// Puts the world back to the seed and forgets requests, faults, limits and sessions.
    /// Open gateway connections are closed with 4009 (session timed out).
    pub fn reset(&self) {
        *self.world() = World::from_seed(&self.inner.config.seed, &self.inner.ids);
        lock(&self.inner.recorder).clear();
        *lock(&self.inner.limits) = RateLimits::new(self.inner.config.invalid_request_limit);
        *lock(&self.inner.faults) = Faults::default();
        let _ = self.inner.gateway_faults.send(GatewayFault::Close { code: 4009 });
        self.touch();
    }

    /// Posts a message as a person (not the bot) and dispatches it as MESSAGE_CREATE, as the
    /// control API's `POST /_emulator/messages` does. `body` is a message create body
    /// (`content`, `embeds`, `message_reference`, …).
    ///
    /// # Errors
    ///
    /// Returns Discord's error body (as JSON) if the channel or user is unknown or the body
    /// breaks a limit.
    pub fn inject_message(&self, channel_id: u64, user_id: u64, body: &Value) -> Result<Value, Value> {
        let mut world = self.world();
        if !world.users.contains_key(&user_id) {
            return Err(ApiError::unknown_user().body);
        }
        let result = world
            .create_message(self, channel_id, Author::User(user_id), body, Vec::new(), Extras::default())
            .map_err(|e| e.body);
        drop(world);
        self.touch();
        result
    }

    /// The bot joins `guild_id` the way accepting its invite URL makes it: with a managed
    /// role named after the bot holding `permissions` (none when 0), then GUILD_CREATE is
    /// dispatched. Joining a guild it is already in changes nothing. Returns the guild as
    /// GUILD_CREATE carries it.
    ///
    /// # Errors
    ///
    /// Returns Discord's error body when the guild does not exist.
    pub fn invite_bot(&self, guild_id: u64, permissions: u64) -> Result<Value, Value> {
        let mut world = self.world();
        let bot = world.bot_id;
        let bot_name = world.users.get(&bot).map(|u| u.username.clone()).unwrap_or_default();
        let Some(guild) = world.guilds.get_mut(&guild_id) else {
            return Err(ApiError::unknown_guild().body);
        };
        if !guild.members.contains_key(&bot) {
            let mut roles = Vec::new();
            if permissions != 0 {
                let role = self.next_id();
                let position = guild.roles.iter().map(|r| r.position).max().unwrap_or(0) + 1;
                guild.roles.push(Role { id: role, name: bot_name, permissions, color: 0, position, managed: true });
                roles.push(role);
            }
            guild.members.insert(bot, Member { roles, nick: None, joined_ms: now_ms() });
            let data = crate::gateway::guild_create_json(&world, guild_id, intents::GUILDS);
            world.dispatch("GUILD_CREATE", data);
        }
        let data = crate::gateway::guild_create_json(&world, guild_id, intents::GUILDS);
        drop(world);
        self.touch();
        Ok(data)
    }

    /// Injects an interaction (a slash command, a button click, a modal submit) from
    /// a person, as `POST /_emulator/interactions` does without `wait`; returns the
    /// INTERACTION_CREATE payload the bot receives.
    ///
    /// # Errors
    ///
    /// Returns Discord's error body (as JSON) if the spec is invalid.
    pub fn inject_interaction(&self, spec: &Value) -> Result<Value, Value> {
        crate::interaction::inject(self, spec).map_err(|error| error.body)
    }

    /// An interaction's state (acknowledged, its callbacks) as
    /// `GET /_emulator/interactions/{id}` shows it.
    pub fn interaction(&self, interaction_id: u64) -> Option<Value> {
        crate::interaction::state_json(self, interaction_id)
    }

    /// The token of an interaction, as the bot received it in INTERACTION_CREATE.
    pub fn interaction_token(&self, interaction_id: u64) -> Option<String> {
        self.world().interactions.get(&interaction_id).map(|i| i.token.clone())
    }

    /// Injects faults, exactly as `POST /_emulator/faults` with this body does (see the
    /// README), e.g. `{"gateway": {"action": "drop"}}` or `{"http": {"status": 503, "count": 2}}`.
    /// Returns `{"connections": N}`, the number of gateway connections a gateway fault reached.
    ///
    /// # Errors
    ///
    /// Returns a description if the body is not a valid fault request.
    pub fn set_faults(&self, body: &Value) -> Result<Value, String> {
        crate::control::apply_faults(self, body)
    }

    /// The `host:port` clients reach the emulator at, if known.
    pub(crate) fn public_host(&self) -> Option<String> {
        lock(&self.inner.public_host).clone()
    }
}

/// Options of [`World::create_message`] beyond the body.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// Set on interaction responses (type 20).
    pub(crate) interaction_metadata: Option<Value>,
    /// A system message type (e.g. 18, thread created).
    pub(crate) kind: Option<u8>,
    /// A fixed id (a forum post's first message has the thread's id).
    pub(crate) id: Option<u64>,
    /// A system message's reference, used as is.
    pub(crate) reference: Option<Value>,
    /// Skip the empty-message check (a deferred interaction's placeholder).
    pub(crate) allow_empty: bool,
}

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

struct NonceEntry {
    channel_id: u64,
    message_id: u64,
    at: Instant,
}

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
    nonces: HashMap<(u64, String), NonceEntry>,
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
    fn from_seed(seed: &Seed, ids: &SnowflakeGenerator) -> Self {
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

    /// The permissions `user_id` has in `guild_id` from its roles, before channel overwrites
    /// (0 when not a member).
    pub(crate) fn guild_permissions(&self, user_id: u64, guild_id: u64) -> u64 {
        let Some(guild) = self.guilds.get(&guild_id) else { return 0 };
        if guild.owner_id == user_id {
            return u64::MAX;
        }
        let Some(member) = guild.members.get(&user_id) else { return 0 };
        let base = guild
            .roles
            .iter()
            .filter(|r| r.id == guild_id || member.roles.contains(&r.id))
            .fold(0, |bits, r| bits | r.permissions);
        if base & permissions::ADMINISTRATOR != 0 { u64::MAX } else { base }
    }

    /// The permissions `user_id` has in `channel_id` (threads use their parent's).
    pub(crate) fn permissions(&self, user_id: u64, channel_id: u64) -> u64 {
        let Some(channel) = self.channels.get(&channel_id) else {
            return 0;
        };
        let Some(guild_id) = channel.guild_id else {
            // DMs: the recipients may talk.
            return if channel.recipients.contains(&user_id) { permissions::MEMBER_DEFAULT } else { 0 };
        };
        if channel.is_thread() {
            return channel.parent_id.map_or(0, |parent| self.permissions(user_id, parent));
        }
        let Some(guild) = self.guilds.get(&guild_id) else {
            return 0;
        };
        if guild.owner_id == user_id {
            return u64::MAX;
        }
        let Some(member) = guild.members.get(&user_id) else {
            return 0;
        };
        let mut base = 0;
        for role in &guild.roles {
            if role.id == guild_id || member.roles.contains(&role.id) {
                base |= role.permissions;
            }
        }
        if base & permissions::ADMINISTRATOR != 0 {
            return u64::MAX;
        }
        let mut perms = base;
        let overwrite = |id: u64, kind: u8| channel.overwrites.iter().find(|o| o.id == id && o.kind == kind);
        if let Some(o) = overwrite(guild_id, 0) {
            perms = (perms & !o.deny) | o.allow;
        }
        let (mut allow, mut deny) = (0, 0);
        for role in &member.roles {
            if let Some(o) = overwrite(*role, 0) {
                allow |= o.allow;
                deny |= o.deny;
            }
        }
        perms = (perms & !deny) | allow;
        if let Some(o) = overwrite(user_id, 1) {
            perms = (perms & !o.deny) | o.allow;
        }
        if perms & permissions::VIEW_CHANNEL == 0 {
            return 0;
        }
        perms
    }

    /// The channel if the bot may see it: 10003 if unknown, 50001 if hidden.
    pub(crate) fn visible_channel(&self, channel_id: u64) -> Result<&Channel, ApiError> {
        let channel = self.channels.get(&channel_id).ok_or_else(ApiError::unknown_channel)?;
        if self.permissions(self.bot_id, channel_id) & permissions::VIEW_CHANNEL == 0 {
            return Err(ApiError::missing_access());
        }
        Ok(channel)
    }

    pub(crate) fn require(&self, user_id: u64, channel_id: u64, bits: u64) -> Result<(), ApiError> {
        if self.permissions(user_id, channel_id) & bits == bits { Ok(()) } else { Err(ApiError::missing_permissions()) }
    }

    pub(crate) fn message(&self, channel_id: u64, message_id: u64) -> Result<&Message, ApiError> {
        self.messages.get(&channel_id).and_then(|m| m.get(&message_id)).ok_or_else(ApiError::unknown_message)
    }

    pub(crate) fn message_mut(&mut self, channel_id: u64, message_id: u64) -> Result<&mut Message, ApiError> {
        self.messages.get_mut(&channel_id).and_then(|m| m.get_mut(&message_id)).ok_or_else(ApiError::unknown_message)
    }

    pub(crate) fn message_json(&self, message: &Message) -> Value {
        message.to_json(self, self.bot_id)
    }

    fn message_state_json(&self, message: &Message) -> Value {
        let mut json = self.message_json(message);
        json["allowed_mentions"] = message.allowed_mentions.clone().unwrap_or(Value::Null);
        json
    }

    /// The MESSAGE_CREATE / MESSAGE_UPDATE payload: the message plus `guild_id` and `member`.
    pub(crate) fn message_event_json(&self, message: &Message) -> Value {
        let mut json = self.message_json(message);
        if let Some(nonce) = &message.nonce {
            json["nonce"] = nonce.clone();
        }
        if let Some(guild_id) = message.guild_id {
            json["guild_id"] = json!(guild_id.to_string());
            if let Author::User(id) = message.author
                && let Some(member) = self.guilds.get(&guild_id).and_then(|g| g.members.get(&id))
            {
                json["member"] = member.to_json();
            }
        }
        json
    }

    /// Parses mentions in `content`, limited by `allowed_mentions` like Discord.
    fn mentions(
        &self,
        content: &str,
        allowed: Option<&Value>,
        reply_author: Option<u64>,
    ) -> (Vec<u64>, Vec<u64>, bool) {
        let parse =
            |kind: &str| allowed.is_none_or(|a| a["parse"].as_array().is_some_and(|p| p.iter().any(|v| v == kind)));
        let listed = |key: &str, id: u64| {
            allowed.is_some_and(|a| {
                a[key].as_array().is_some_and(|l| l.iter().any(|v| v.as_str() == Some(&id.to_string())))
            })
        };
        let mut users = Vec::new();
        let mut roles = Vec::new();
        let mut rest = content;
        while let Some(start) = rest.find("<@") {
            rest = &rest[start + 2..];
            let Some(end) = rest.find('>') else { break };
            let inner = &rest[..end];
            if let Some(role) = inner.strip_prefix('&') {
                if let Ok(id) = role.parse::<u64>()
                    && (parse("roles") || listed("roles", id))
                    && !roles.contains(&id)
                {
                    roles.push(id);
                }
            } else if let Ok(id) = inner.trim_start_matches('!').parse::<u64>()
                && self.users.contains_key(&id)
                && (parse("users") || listed("users", id))
                && !users.contains(&id)
            {
                users.push(id);
            }
        }
        if let Some(author) = reply_author
            && allowed.is_none_or(|a| a["replied_user"].as_bool().unwrap_or(false))
            && !users.contains(&author)
        {
            users.push(author);
        }
        let everyone = (content.contains("@everyone") || content.contains("@here")) && parse("everyone");
        (users, roles, everyone)
    }

    /// Creates a message after Discord's checks, dispatches MESSAGE_CREATE, and returns the
    /// message object as the create response shows it.
    pub(crate) fn create_message(
        &mut self,
        state: &EmulatorState,
        channel_id: u64,
        author: Author,
        body: &Value,
        attachments: Vec<Value>,
        extras: Extras,
    ) -> Result<Value, ApiError> {
        let Extras { interaction_metadata, kind, id, reference: system_reference, allow_empty } = extras;
        let channel = self.channels.get(&channel_id).ok_or_else(ApiError::unknown_channel)?;
        // A forum takes posts (`POST /channels/{id}/threads`), never messages; live Discord
        // answers 50008 there, as for a category.
        if matches!(channel.kind, 4 | 15 | 16) {
            return Err(ApiError::not_a_text_channel());
        }
        if matches!(channel.kind, 2 | 13) {
            return Err(ApiError::wrong_channel_type());
        }
        let is_thread = channel.is_thread();
        let guild_id = channel.guild_id;
        let author_id = match &author {
            Author::User(id) => Some(*id),
            Author::Webhook { .. } => None,
        };
        if let Some(user_id) = author_id {
            let perms = self.permissions(user_id, channel_id);
            if perms & permissions::VIEW_CHANNEL == 0 {
                return Err(ApiError::missing_access());
            }
            let send = if is_thread { permissions::SEND_MESSAGES_IN_THREADS } else { permissions::SEND_MESSAGES };
            if perms & send == 0 {
                return Err(ApiError::missing_permissions());
            }
            if let Some(thread) = &channel.thread
                && thread.archived
                && thread.locked
                && perms & permissions::MANAGE_THREADS == 0
            {
                return Err(ApiError::thread_archived());
            }
        }
        if !allow_empty {
            validate::message(body, true, attachments.len())?;
        }

        // `enforce_nonce`: the same author and nonce within the window get the first message.
        let nonce = match &body["nonce"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let author_key = match &author {
            Author::User(id) | Author::Webhook { id, .. } => *id,
        };
        let now = Instant::now();
        self.nonces.retain(|_, e| now.duration_since(e.at) < NONCE_WINDOW);
        if body["enforce_nonce"].as_bool() == Some(true)
            && let Some(nonce) = &nonce
            && let Some(entry) = self.nonces.get(&(author_key, nonce.clone()))
            && let Ok(first) = self.message(entry.channel_id, entry.message_id)
        {
            let mut json = self.message_json(first);
            json["nonce"] = body["nonce"].clone();
            return Ok(json);
        }

        let reference = match body["message_reference"].as_object().filter(|_| system_reference.is_none()) {
            Some(reference) => {
                let target = reference.get("message_id").and_then(Value::as_str).and_then(|s| s.parse::<u64>().ok());
                let target_channel = reference
                    .get("channel_id")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(channel_id);
                match target.map(|t| self.message(target_channel, t)) {
                    Some(Ok(replied)) => Some((replied.id, target_channel, replied.author_id())),
                    _ if reference.get("fail_if_not_exists").and_then(Value::as_bool) == Some(false) => None,
                    _ => {
                        let mut errors = crate::error::FormErrors::default();
                        errors.add(
                            &["message_reference"],
                            "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                            "Unknown message".to_owned(),
                        );
                        return Err(errors.into_result().expect_err("an error was added"));
                    }
                }
            }
            None => None,
        };
        let content = body["content"].as_str().unwrap_or("").to_owned();
        let allowed = body.get("allowed_mentions").filter(|v| v.is_object()).cloned();
        let (mentions, mention_roles, mention_everyone) =
            self.mentions(&content, allowed.as_ref(), reference.map(|r| r.2));
        let id = id.unwrap_or_else(|| state.next_id());
        let embeds =
            body["embeds"].as_array().map(|embeds| embeds.iter().map(normalize_embed).collect()).unwrap_or_default();
        let position = if let Some(thread) = self.channels.get_mut(&channel_id).and_then(|c| c.thread.as_mut()) {
            thread.message_count += 1;
            thread.total_message_sent += 1;
            Some(thread.total_message_sent - 1)
        } else {
            None
        };
        let application_id = match &author {
            Author::User(id) if *id == self.bot_id => Some(self.application_id),
            _ => None,
        }
        .filter(|_| interaction_metadata.is_some());
        // SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS, IS_COMPONENTS_V2; LOADING only
        // for a deferred interaction's placeholder.
        let settable_flags = (1 << 2) | (1 << 6) | (1 << 12) | (1 << 15) | if allow_empty { 1 << 7 } else { 0 };
        let message = Message {
            id,
            channel_id,
            guild_id,
            author,
            content,
            edited_ms: None,
            tts: body["tts"].as_bool().unwrap_or(false),
            mention_everyone,
            mentions,
            mention_roles,
            attachments,
            embeds,
            components: body["components"].as_array().map(|c| number_components(c)).unwrap_or_default(),
            pinned: false,
            kind: if let Some(kind) = kind {
                kind
            } else if interaction_metadata.is_some() {
                20
            } else if reference.is_some() {
                19
            } else {
                0
            },
            flags: body["flags"].as_u64().unwrap_or(0) & settable_flags,
            nonce: body.get("nonce").filter(|n| !n.is_null()).cloned(),
            application_id,
            message_reference: system_reference.or_else(|| {
                reference.map(|(message_id, channel, _)| {
                    let mut r =
                        json!({"type": 0, "message_id": message_id.to_string(), "channel_id": channel.to_string()});
                    if let Some(g) = guild_id {
                        r["guild_id"] = json!(g.to_string());
                    }
                    r
                })
            }),
            interaction_metadata,
            thread_id: None,
            position,
            reactions: Vec::new(),
            allowed_mentions: allowed,
        };
        if let Some(nonce) = nonce {
            self.nonces.insert((author_key, nonce), NonceEntry { channel_id, message_id: id, at: now });
        }
        let mut response = self.message_json(&message);
        if let Some(nonce) = &message.nonce {
            response["nonce"] = nonce.clone();
        }
        if let Some((replied, channel, _)) = reference
            && let Ok(replied) = self.message(channel, replied)
        {
            response["referenced_message"] = self.message_json(replied);
        }
        let mut event = self.message_event_json(&message);
        if let Some(referenced) = response.get("referenced_message") {
            event["referenced_message"] = referenced.clone();
        }
        self.messages.entry(channel_id).or_default().insert(id, message);
        if let Some(channel) = self.channels.get_mut(&channel_id) {
            channel.last_message_id = Some(id);
        }
        self.unarchive_on_activity(channel_id);
        // Ephemeral messages are for the invoking user only: the bot gets no event.
        if event["flags"].as_u64().unwrap_or(0) & crate::interaction::EPHEMERAL == 0 {
            self.dispatch("MESSAGE_CREATE", event);
        }
        state.touch();
        Ok(response)
    }

    /// Sending into an archived (unlocked) thread unarchives it, as on Discord.
    fn unarchive_on_activity(&mut self, channel_id: u64) {
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

    /// Edits a message's content, embeds, components, flags or allowed mentions, and
    /// dispatches MESSAGE_UPDATE.
    pub(crate) fn edit_message(
        &mut self,
        channel_id: u64,
        message_id: u64,
        body: &Value,
        attachments: Option<Vec<Value>>,
    ) -> Result<Value, ApiError> {
        validate::message(body, false, 0)?;
        let allowed = body.get("allowed_mentions").filter(|v| v.is_object()).cloned();
        let content = body["content"].as_str().map(str::to_owned);
        let mentions = content.as_deref().map(|c| self.mentions(c, allowed.as_ref(), None));
        let message = self.message_mut(channel_id, message_id)?;
        if let Some(content) = content {
            message.content = content;
        }
        if let Some((users, roles, everyone)) = mentions {
            message.mentions = users;
            message.mention_roles = roles;
            message.mention_everyone = everyone;
        }
        if let Some(embeds) = body["embeds"].as_array() {
            message.embeds = embeds.iter().map(normalize_embed).collect();
        } else if body.get("embeds").is_some_and(Value::is_null) {
            message.embeds.clear();
        }
        if let Some(components) = body["components"].as_array() {
            message.components = number_components(components);
        } else if body.get("components").is_some_and(Value::is_null) {
            message.components.clear();
        }
        if let Some(flags) = body["flags"].as_u64() {
            // Only SUPPRESS_EMBEDS can be toggled on edit.
            message.flags = (message.flags & !(1 << 2)) | (flags & (1 << 2));
        }
        if let Some(attachments) = attachments {
            message.attachments = attachments;
        } else if let Some(keep) = body["attachments"].as_array() {
            let keep: Vec<&str> = keep.iter().filter_map(|a| a["id"].as_str()).collect();
            message.attachments.retain(|a| a["id"].as_str().is_some_and(|id| keep.contains(&id)));
        }
        if allowed.is_some() {
            message.allowed_mentions = allowed;
        }
        if !self.message(channel_id, message_id)?.has_payload() {
            return Err(ApiError::empty_message());
        }
        self.message_mut(channel_id, message_id)?.edited_ms = Some(now_ms());
        let message = self.message(channel_id, message_id)?;
        let json = self.message_json(message);
        let event = self.message_event_json(message);
        self.dispatch("MESSAGE_UPDATE", event);
        Ok(json)
    }

    /// Deletes a message and dispatches MESSAGE_DELETE.
    pub(crate) fn delete_message(&mut self, channel_id: u64, message_id: u64) -> Result<(), ApiError> {
        let message = self
            .messages
            .get_mut(&channel_id)
            .and_then(|m| m.remove(&message_id))
            .ok_or_else(ApiError::unknown_message)?;
        if let Some(thread) = self.channels.get_mut(&channel_id).and_then(|c| c.thread.as_mut()) {
            thread.message_count = thread.message_count.saturating_sub(1);
        }
        let mut event = json!({"id": message_id.to_string(), "channel_id": channel_id.to_string()});
        if let Some(guild_id) = message.guild_id {
            event["guild_id"] = json!(guild_id.to_string());
        }
        self.dispatch("MESSAGE_DELETE", event);
        Ok(())
    }

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

impl Message {
    fn has_payload(&self) -> bool {
        !self.content.is_empty()
            || !self.embeds.is_empty()
            || !self.components.is_empty()
            || !self.attachments.is_empty()
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

/// Discord numbers every component of a message (`id`, in tree order) unless given one.
fn number_components(components: &[Value]) -> Vec<Value> {
    fn walk(component: &mut Value, next: &mut u64) {
        if let Some(object) = component.as_object_mut() {
            if !object.contains_key("id") {
                object.insert("id".into(), json!(*next));
            }
            *next += 1;
            if let Some(children) = object.get_mut("components").and_then(Value::as_array_mut) {
                for child in children {
                    walk(child, next);
                }
            }
            if let Some(accessory) = object.get_mut("accessory") {
                walk(accessory, next);
            }
        }
    }
    let mut next = 1;
    let mut numbered = components.to_vec();
    for component in &mut numbered {
        walk(component, &mut next);
    }
    numbered
}

/// Discord fills in `type: "rich"` and drops nulls; keep what was sent otherwise.
fn normalize_embed(embed: &Value) -> Value {
    let mut embed = embed.clone();
    if let Some(object) = embed.as_object_mut() {
        object.retain(|_, v| !v.is_null());
        object.entry("type").or_insert_with(|| json!("rich"));
        if let Some(fields) = object.get_mut("fields").and_then(Value::as_array_mut) {
            for field in fields {
                if let Some(field) = field.as_object_mut() {
                    field.entry("inline").or_insert(json!(false));
                }
            }
        }
    }
    embed
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

    #[test]
    fn permissions_follow_overwrites() {
        use crate::config::*;
        let state = EmulatorState::new(EmulatorConfig::default());
        let world = state.world();
        let bot = DEFAULT_BOT_USER_ID;
        assert_ne!(world.permissions(bot, DEFAULT_HOME_CHANNEL_ID) & permissions::SEND_MESSAGES, 0);
        assert_eq!(world.permissions(bot, DEFAULT_HIDDEN_CHANNEL_ID), 0);
        let read_only = world.permissions(bot, DEFAULT_READ_ONLY_CHANNEL_ID);
        assert_ne!(read_only & permissions::VIEW_CHANNEL, 0);
        assert_eq!(read_only & permissions::SEND_MESSAGES, 0);
        // The owner bypasses overwrites.
        assert_eq!(world.permissions(DEFAULT_OWNER_USER_ID, DEFAULT_HIDDEN_CHANNEL_ID), u64::MAX);
    }
}
