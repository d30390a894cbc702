//! The emulator's in-memory world and the operations REST, the control API and the web view
//! share.
//!
//! # Layout
//!
//! - this file: [`EmulatorState`], the shared handle, and its public API (inject messages,
//!   interactions and faults, read messages, channels and the snapshot, reset).
//! - `world.rs`: the `World` that `reset` puts back to the seed, and how it is built from the seed.
//! - `permissions.rs`: what a user may do in a guild or channel: roles, overwrites, visibility.
//! - `messages.rs`: creating, editing and deleting messages with Discord's checks (nonces,
//!   replies, mentions, component ids, embed defaults).
//! - `threads.rs`: creating threads, unarchiving on activity, thread member objects.
//! - `dispatch.rs`: gateway sessions and the dispatches each one sees (intents, shards, content).
//! - `snapshot.rs`: everything the world holds as JSON, for `GET /_emulator/state` and the web view.

mod dispatch;
mod messages;
mod permissions;
mod snapshot;
mod threads;
mod world;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::{broadcast, watch};

pub(crate) use self::dispatch::{Session, intents};
pub(crate) use self::messages::Extras;
pub(crate) use self::threads::{NewThread, thread_member_json};
pub(crate) use self::world::World;
use crate::config::EmulatorConfig;
use crate::error::ApiError;
use crate::fault::{Faults, GatewayFault};
use crate::model::{Author, Channel, Member, Role};
use crate::ratelimit::RateLimits;
use crate::record::RecordedRequest;
use crate::snowflake::{SnowflakeGenerator, now_ms};

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
    /// The state's generation, counted up on every change: a waiter that
    /// names the generation it last saw cannot miss a change made before it
    /// started waiting (the web view's long poll, `wait` on interactions).
    pub(crate) changed: watch::Sender<u64>,
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
                changed: watch::channel(0).0,
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
        self.inner.changed.send_modify(|generation| *generation += 1);
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

    /// An administrator sets (or, with `allow` and `deny` both 0, removes) the
    /// permission overwrite for `target` (a member with `kind` 1, a role with 0)
    /// on a guild channel, as Discord's channel settings do; CHANNEL_UPDATE is
    /// dispatched with the channel's new overwrites. Returns the channel.
    ///
    /// # Errors
    ///
    /// Returns Discord's error body when the channel does not exist.
    pub fn set_permission_overwrite(
        &self,
        channel_id: u64,
        target: u64,
        kind: u8,
        allow: u64,
        deny: u64,
    ) -> Result<Value, Value> {
        let mut world = self.world();
        let Some(channel) = world.channels.get_mut(&channel_id) else {
            return Err(ApiError::unknown_channel().body);
        };
        channel.overwrites.retain(|o| o.id != target);
        if allow | deny != 0 {
            channel.overwrites.push(crate::model::Overwrite { id: target, kind, allow, deny });
        }
        let json = channel.to_json();
        let event = if channel.is_thread() { "THREAD_UPDATE" } else { "CHANNEL_UPDATE" };
        world.dispatch(event, json.clone());
        drop(world);
        self.touch();
        Ok(json)
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
