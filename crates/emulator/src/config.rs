//! Emulator configuration and the seed that describes its guilds, channels, users and roles.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The bot token the emulator accepts unless configured otherwise. Obviously fake.
pub const DEFAULT_BOT_TOKEN: &str = "emulator-token";
/// The guild in the default seed.
pub const DEFAULT_GUILD_ID: u64 = 1_100_000_000_000_000_001;
/// The category `omp` that holds the default seed's channels.
pub const DEFAULT_CATEGORY_ID: u64 = 1_100_000_000_000_000_009;
/// The text channel `omp-sessions` in the default guild.
pub const DEFAULT_HOME_CHANNEL_ID: u64 = 1_100_000_000_000_000_010;
/// The text channel `general` in the default guild.
pub const DEFAULT_GENERAL_CHANNEL_ID: u64 = 1_100_000_000_000_000_011;
/// The forum channel `omp-forum` in the default guild.
pub const DEFAULT_FORUM_CHANNEL_ID: u64 = 1_100_000_000_000_000_012;
/// A text channel the bot cannot see (`VIEW_CHANNEL` denied): requests get 50001.
pub const DEFAULT_HIDDEN_CHANNEL_ID: u64 = 1_100_000_000_000_000_013;
/// A text channel the bot can read but not write (`SEND_MESSAGES` denied): posts get 50013.
pub const DEFAULT_READ_ONLY_CHANNEL_ID: u64 = 1_100_000_000_000_000_014;
/// The bot user, whose id is also the application id.
pub const DEFAULT_BOT_USER_ID: u64 = 1_100_000_000_000_000_100;
/// The application (Discord gives new applications the bot user's id).
pub const DEFAULT_APPLICATION_ID: u64 = DEFAULT_BOT_USER_ID;
/// A human member who owns the default guild.
pub const DEFAULT_OWNER_USER_ID: u64 = 1_100_000_000_000_000_101;
/// A second human member with no roles.
pub const DEFAULT_GUEST_USER_ID: u64 = 1_100_000_000_000_000_102;
/// The bot's managed role in the default guild.
pub const DEFAULT_BOT_ROLE_ID: u64 = 1_100_000_000_000_000_200;
/// The `maintainer` role the owner has.
pub const DEFAULT_MAINTAINER_ROLE_ID: u64 = 1_100_000_000_000_000_201;

/// How an [`EmulatorConfig`] could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The seed file could not be read.
    #[error("could not read the seed file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The seed file is not a valid seed.
    #[error("the seed file {path} is not a valid seed")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// The seed is well-formed JSON but inconsistent.
    #[error("the seed is inconsistent: {reason}")]
    Invalid {
        /// What is wrong.
        reason: String,
    },
}

/// Everything the emulator needs to start.
#[derive(Clone)]
pub struct EmulatorConfig {
    /// The bot token requests must carry as `Authorization: Bot <token>`.
    pub token: String,
    /// The guilds, channels, users and roles that exist at start and after a reset.
    pub seed: Seed,
    /// Whether Discord's rate limits (per route, per webhook, global) are enforced.
    /// Headers are sent either way.
    pub rate_limits: bool,
    /// The gateway heartbeat interval sent in HELLO (Discord: 41.25 s).
    pub heartbeat_interval: Duration,
    /// Minimum spacing between two IDENTIFYs (Discord: 5 s per bucket); an earlier one is
    /// closed with 4008.
    pub identify_interval: Duration,
    /// How many 401/403/429 responses in 10 minutes ban the client (Discord: 10,000).
    pub invalid_request_limit: u32,
    /// How long an interaction may wait for its first response (Discord: 3 s).
    pub interaction_ack_deadline: Duration,
    /// How long an interaction token accepts followups (Discord: 15 minutes).
    pub interaction_token_lifetime: Duration,
    /// The privileged intents the application has enabled (bits of `GUILD_MEMBERS` 1<<1,
    /// `GUILD_PRESENCES` 1<<8, `MESSAGE_CONTENT` 1<<15). Asking for others closes with 4014.
    pub privileged_intents: u64,
    /// How many requests `GET /_emulator/requests` keeps (the oldest are dropped first).
    pub max_recorded_requests: usize,
    /// How long a repeated `nonce` with `enforce_nonce` returns the first message instead
    /// of posting (Discord: "a few minutes"; 5 minutes here). Tests shorten it to stand
    /// for a resend after a long outage.
    pub nonce_window: Duration,
}

impl fmt::Debug for EmulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmulatorConfig")
            .field("token", &"<redacted>")
            .field("seed", &self.seed)
            .field("rate_limits", &self.rate_limits)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("identify_interval", &self.identify_interval)
            .field("invalid_request_limit", &self.invalid_request_limit)
            .field("interaction_ack_deadline", &self.interaction_ack_deadline)
            .field("interaction_token_lifetime", &self.interaction_token_lifetime)
            .field("privileged_intents", &self.privileged_intents)
            .field("max_recorded_requests", &self.max_recorded_requests)
            .field("nonce_window", &self.nonce_window)
            .finish()
    }
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            token: DEFAULT_BOT_TOKEN.to_owned(),
            seed: Seed::default(),
            rate_limits: true,
            heartbeat_interval: Duration::from_millis(41_250),
            identify_interval: Duration::from_secs(5),
            invalid_request_limit: 10_000,
            interaction_ack_deadline: Duration::from_secs(3),
            interaction_token_lifetime: Duration::from_secs(15 * 60),
            privileged_intents: (1 << 1) | (1 << 8) | (1 << 15),
            max_recorded_requests: 100_000,
            nonce_window: Duration::from_secs(5 * 60),
        }
    }
}

impl EmulatorConfig {
    /// The default configuration with the seed read from a JSON file (see the README for
    /// its shape).
    ///
    /// # Errors
    ///
    /// Returns [`ConfigError`] if the file cannot be read, is not a seed, or refers to ids
    /// it does not define.
    pub fn from_seed_file(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let seed: Seed =
            serde_json::from_str(&text).map_err(|source| ConfigError::Parse { path: path.to_owned(), source })?;
        seed.check()?;
        Ok(Self { seed, ..Self::default() })
    }
}

/// The world the emulator starts with.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    /// The application the bot belongs to.
    pub application: SeedApplication,
    /// The bot user the token logs in as.
    pub bot: SeedUser,
    /// Other users (people).
    #[serde(default)]
    pub users: Vec<SeedUser>,
    /// Guilds with their roles, members and channels.
    #[serde(default)]
    pub guilds: Vec<SeedGuild>,
}

/// An application.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedApplication {
    /// Application id.
    #[serde(with = "id")]
    pub id: u64,
    /// Application name.
    pub name: String,
    /// The user who owns the application.
    #[serde(with = "id")]
    pub owner_id: u64,
}

/// A user.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    /// User id.
    #[serde(with = "id")]
    pub id: u64,
    /// Unique username.
    pub username: String,
    /// Display name.
    #[serde(default)]
    pub global_name: Option<String>,
    /// Whether the user is a bot.
    #[serde(default)]
    pub bot: bool,
}

/// A guild.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedGuild {
    /// Guild id; also the id of its `@everyone` role.
    #[serde(with = "id")]
    pub id: u64,
    /// Guild name.
    pub name: String,
    /// The owning user (has every permission).
    #[serde(with = "id")]
    pub owner_id: u64,
    /// Roles. `@everyone` (id = guild id) is added if missing.
    #[serde(default)]
    pub roles: Vec<SeedRole>,
    /// Members. The bot is added if missing, unless `bot_invited` is false.
    #[serde(default)]
    pub members: Vec<SeedMember>,
    /// Channels of any type: 0 text, 2 voice, 4 category, 5 announcement, 15 forum.
    #[serde(default)]
    pub channels: Vec<SeedChannel>,
    /// Whether the bot has been invited (default true). A guild with `false` is one the bot
    /// is not in yet, until `POST /_emulator/guilds/{id}/bot` adds it as an invite would.
    #[serde(default = "invited", skip_serializing_if = "is_invited")]
    pub bot_invited: bool,
}

fn invited() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_invited(invited: &bool) -> bool {
    *invited
}

/// A role.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRole {
    /// Role id.
    #[serde(with = "id")]
    pub id: u64,
    /// Role name.
    pub name: String,
    /// Permission bits.
    #[serde(with = "id")]
    pub permissions: u64,
    /// RGB colour.
    #[serde(default)]
    pub color: u32,
    /// Position in the role list.
    #[serde(default)]
    pub position: i64,
    /// Whether the role belongs to a bot (`tags.bot_id`).
    #[serde(default)]
    pub managed: bool,
}

/// A guild member.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMember {
    /// The member's user id.
    #[serde(with = "id")]
    pub user_id: u64,
    /// Role ids (besides `@everyone`).
    #[serde(default, with = "ids")]
    pub roles: Vec<u64>,
    /// Guild nickname.
    #[serde(default)]
    pub nick: Option<String>,
}

/// A guild channel.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedChannel {
    /// Channel id.
    #[serde(with = "id")]
    pub id: u64,
    /// Channel type (Discord's numbers).
    #[serde(rename = "type", default)]
    pub kind: u8,
    /// Channel name.
    pub name: String,
    /// Parent category.
    #[serde(default, with = "opt_id", skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<u64>,
    /// Channel topic.
    #[serde(default)]
    pub topic: Option<String>,
    /// Sorting position.
    #[serde(default)]
    pub position: i64,
    /// Permission overwrites (`type` 0 role, 1 member).
    #[serde(default)]
    pub permission_overwrites: Vec<SeedOverwrite>,
    /// Channel flags, Discord's bits: `REQUIRE_TAG` (1 << 4) makes every post in a forum
    /// need one of its tags (else 40067).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub flags: u64,
    /// A forum's tags, which its posts may carry (`applied_tags`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub available_tags: Vec<SeedTag>,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A forum tag.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedTag {
    /// Tag id.
    #[serde(with = "id")]
    pub id: u64,
    /// Tag name (1–20 characters on Discord).
    pub name: String,
    /// Whether only members with Manage Threads may apply it.
    #[serde(default)]
    pub moderated: bool,
}

/// Channel flag: a forum's posts need a tag.
pub const REQUIRE_TAG: u64 = 1 << 4;

/// A channel permission overwrite.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedOverwrite {
    /// Role or user id.
    #[serde(with = "id")]
    pub id: u64,
    /// 0 for a role, 1 for a member.
    #[serde(rename = "type")]
    pub kind: u8,
    /// Allowed permission bits.
    #[serde(default, with = "id")]
    pub allow: u64,
    /// Denied permission bits.
    #[serde(default, with = "id")]
    pub deny: u64,
}

/// Permission bits the emulator checks (Discord's values).
pub mod permissions {
    /// Create instant invites.
    pub const CREATE_INSTANT_INVITE: u64 = 1 << 0;
    /// Every permission, bypassing overwrites.
    pub const ADMINISTRATOR: u64 = 1 << 3;
    /// Manage channels.
    pub const MANAGE_CHANNELS: u64 = 1 << 4;
    /// Add reactions.
    pub const ADD_REACTIONS: u64 = 1 << 6;
    /// See the channel.
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    /// Post messages.
    pub const SEND_MESSAGES: u64 = 1 << 11;
    /// Delete and pin other people's messages.
    pub const MANAGE_MESSAGES: u64 = 1 << 13;
    /// Embed links.
    pub const EMBED_LINKS: u64 = 1 << 14;
    /// Upload files.
    pub const ATTACH_FILES: u64 = 1 << 15;
    /// Read history.
    pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
    /// Mention `@everyone`.
    pub const MENTION_EVERYONE: u64 = 1 << 17;
    /// Manage webhooks.
    pub const MANAGE_WEBHOOKS: u64 = 1 << 29;
    /// Use slash commands.
    pub const USE_APPLICATION_COMMANDS: u64 = 1 << 31;
    /// Archive and delete threads.
    pub const MANAGE_THREADS: u64 = 1 << 34;
    /// Create public threads.
    pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
    /// Create private threads.
    pub const CREATE_PRIVATE_THREADS: u64 = 1 << 36;
    /// Post in threads.
    pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;
    /// What `@everyone` may do in the default seed.
    pub const MEMBER_DEFAULT: u64 = CREATE_INSTANT_INVITE
        | ADD_REACTIONS
        | VIEW_CHANNEL
        | SEND_MESSAGES
        | EMBED_LINKS
        | ATTACH_FILES
        | READ_MESSAGE_HISTORY
        | USE_APPLICATION_COMMANDS
        | CREATE_PUBLIC_THREADS
        | SEND_MESSAGES_IN_THREADS;
}

impl Default for Seed {
    fn default() -> Self {
        use permissions::*;
        let text = |id, name: &str, position| SeedChannel {
            id,
            kind: 0,
            name: name.to_owned(),
            parent_id: Some(DEFAULT_CATEGORY_ID),
            topic: None,
            position,
            permission_overwrites: Vec::new(),
            flags: 0,
            available_tags: Vec::new(),
        };
        let mut hidden = text(DEFAULT_HIDDEN_CHANNEL_ID, "private", 3);
        hidden.permission_overwrites.push(SeedOverwrite {
            id: DEFAULT_BOT_USER_ID,
            kind: 1,
            allow: 0,
            deny: VIEW_CHANNEL,
        });
        let mut read_only = text(DEFAULT_READ_ONLY_CHANNEL_ID, "announcements", 4);
        read_only.permission_overwrites.push(SeedOverwrite {
            id: DEFAULT_GUILD_ID,
            kind: 0,
            allow: 0,
            deny: SEND_MESSAGES,
        });
        let mut forum = text(DEFAULT_FORUM_CHANNEL_ID, "omp-forum", 2);
        forum.kind = 15;
        Self {
            application: SeedApplication {
                id: DEFAULT_APPLICATION_ID,
                name: "omp".to_owned(),
                owner_id: DEFAULT_OWNER_USER_ID,
            },
            bot: SeedUser { id: DEFAULT_BOT_USER_ID, username: "omp".to_owned(), global_name: None, bot: true },
            users: vec![
                SeedUser {
                    id: DEFAULT_OWNER_USER_ID,
                    username: "owner".to_owned(),
                    global_name: Some("Owner".to_owned()),
                    bot: false,
                },
                SeedUser {
                    id: DEFAULT_GUEST_USER_ID,
                    username: "guest".to_owned(),
                    global_name: Some("Guest".to_owned()),
                    bot: false,
                },
            ],
            guilds: vec![SeedGuild {
                bot_invited: true,
                id: DEFAULT_GUILD_ID,
                name: "omp-discord emulator".to_owned(),
                owner_id: DEFAULT_OWNER_USER_ID,
                roles: vec![
                    SeedRole {
                        id: DEFAULT_GUILD_ID,
                        name: "@everyone".to_owned(),
                        permissions: MEMBER_DEFAULT,
                        color: 0,
                        position: 0,
                        managed: false,
                    },
                    SeedRole {
                        id: DEFAULT_BOT_ROLE_ID,
                        name: "omp".to_owned(),
                        permissions: MEMBER_DEFAULT
                            | MANAGE_MESSAGES
                            | MANAGE_THREADS
                            | MANAGE_WEBHOOKS
                            | CREATE_PRIVATE_THREADS
                            | MENTION_EVERYONE,
                        color: 0x5865F2,
                        position: 2,
                        managed: true,
                    },
                    SeedRole {
                        id: DEFAULT_MAINTAINER_ROLE_ID,
                        name: "maintainer".to_owned(),
                        permissions: MEMBER_DEFAULT | MANAGE_MESSAGES | MANAGE_THREADS,
                        color: 0x2ECC71,
                        position: 1,
                        managed: false,
                    },
                ],
                members: vec![
                    SeedMember { user_id: DEFAULT_BOT_USER_ID, roles: vec![DEFAULT_BOT_ROLE_ID], nick: None },
                    SeedMember { user_id: DEFAULT_OWNER_USER_ID, roles: vec![DEFAULT_MAINTAINER_ROLE_ID], nick: None },
                    SeedMember { user_id: DEFAULT_GUEST_USER_ID, roles: Vec::new(), nick: None },
                ],
                channels: vec![
                    SeedChannel {
                        id: DEFAULT_CATEGORY_ID,
                        kind: 4,
                        name: "omp".to_owned(),
                        parent_id: None,
                        topic: None,
                        position: 0,
                        permission_overwrites: Vec::new(),
                        flags: 0,
                        available_tags: Vec::new(),
                    },
                    text(DEFAULT_HOME_CHANNEL_ID, "omp-sessions", 0),
                    text(DEFAULT_GENERAL_CHANNEL_ID, "general", 1),
                    forum,
                    hidden,
                    read_only,
                ],
            }],
        }
    }
}

impl Seed {
    /// Checks that every id the seed refers to is defined.
    pub(crate) fn check(&self) -> Result<(), ConfigError> {
        let invalid = |reason: String| Err(ConfigError::Invalid { reason });
        let user_known = |id: u64| self.bot.id == id || self.users.iter().any(|u| u.id == id);
        for guild in &self.guilds {
            if !user_known(guild.owner_id) {
                return invalid(format!("guild {} has an unknown owner", guild.id));
            }
            for member in &guild.members {
                if !user_known(member.user_id) {
                    return invalid(format!("guild {} has an unknown member", guild.id));
                }
                if let Some(role) = member.roles.iter().find(|r| !guild.roles.iter().any(|known| known.id == **r)) {
                    return invalid(format!("guild {} has no role {role}", guild.id));
                }
            }
            for channel in &guild.channels {
                if let Some(parent) = channel.parent_id
                    && !guild.channels.iter().any(|c| c.id == parent)
                {
                    return invalid(format!("channel {} has an unknown parent", channel.id));
                }
            }
        }
        Ok(())
    }
}

/// Snowflakes are strings on the wire; seeds may also write them as numbers.
mod id {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Raw {
        Number(u64),
        Text(String),
    }

    impl Raw {
        pub(super) fn value<E: Error>(self) -> Result<u64, E> {
            match self {
                Raw::Number(n) => Ok(n),
                Raw::Text(text) => text.parse().map_err(|_| E::custom(format!("{text:?} is not a snowflake"))),
            }
        }
    }

    pub(super) fn serialize<S: Serializer>(id: &u64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(id)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        Raw::deserialize(deserializer)?.value()
    }
}

mod opt_id {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(id: &Option<u64>, serializer: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => serializer.collect_str(id),
            None => serializer.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        Option::<super::id::Raw>::deserialize(deserializer)?.map(super::id::Raw::value).transpose()
    }
}

mod ids {
    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub(super) fn serialize<S: Serializer>(ids: &[u64], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(ids.len()))?;
        for id in ids {
            seq.serialize_element(&id.to_string())?;
        }
        seq.end()
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u64>, D::Error> {
        Vec::<super::id::Raw>::deserialize(deserializer)?.into_iter().map(super::id::Raw::value).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_the_token() {
        let config = EmulatorConfig { token: "secret-value-123".to_owned(), ..EmulatorConfig::default() };
        let debug = format!("{config:?}");
        assert!(debug.contains("token: \"<redacted>\""), "{debug}");
        assert!(!debug.contains("secret-value-123"));
    }

    #[test]
    fn default_seed_round_trips_through_a_file() {
        let dir = std::env::temp_dir().join(format!("emulator-seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("seed.json");
        std::fs::write(&path, serde_json::to_string(&Seed::default()).unwrap()).unwrap();
        let config = EmulatorConfig::from_seed_file(&path).unwrap();
        assert_eq!(config.seed.guilds[0].id, DEFAULT_GUILD_ID);
        assert_eq!(config.seed.guilds[0].channels.len(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn seeds_accept_numeric_ids_and_reject_unknown_references() {
        let seed: Seed = serde_json::from_str(
            r#"{"application":{"id":5,"name":"a","owner_id":"6"},
                "bot":{"id":5,"username":"bot","bot":true},
                "users":[{"id":"6","username":"me"}],
                "guilds":[{"id":7,"name":"g","owner_id":6,
                  "channels":[{"id":8,"name":"c","parent_id":"99"}]}]}"#,
        )
        .unwrap();
        assert_eq!(seed.users[0].id, 6);
        let err = seed.check().unwrap_err();
        assert!(err.to_string().contains("channel 8 has an unknown parent"), "{err}");
    }
}
