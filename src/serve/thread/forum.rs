//! Sessions in a forum channel (type 15): each session's thread is a forum
//! post, opened with the session card as its first message. That message has
//! the post's id, so it is recorded as the session's starter, as in a text
//! channel; only its place differs (inside the post, not in the channel), and
//! [`Sidecar::starter_of`] knows that.
//!
//! Opening a post has no `nonce`: a crash (or a lost answer) between the
//! request and its record could open a second post on the next attempt. So
//! each attempt is journaled first (`forum-post:<session>` in `meta`: when,
//! and the name asked for), and an attempt that finds such a mark first looks
//! for the post it may have opened among the guild's active threads: in this
//! forum, opened by the bot, with that name, no older than the mark (less
//! [`CLOCK_SLACK_MS`]) and not any other session's thread. Posts are opened one
//! at a time ([`Forums::opening`]), so at most one attempt is ever in doubt,
//! and the lookup cannot hand one post to two sessions. (A post archived
//! before the sidecar comes back — a day without activity — is not among the
//! active threads; then a second post opens, as a text channel's starter
//! would be posted again once Discord forgot its nonce.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex as SyncMutex};

use omp_discord_core::embed::MessagePayload;
use twilight_model::channel::{Channel, ChannelFlags, ChannelType};
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, GuildMarker, TagMarker, UserMarker};

use crate::discord::codes::TAG_REQUIRED;
use crate::discord::{Discord, SendError};
use crate::serve::{Sidecar, now_ms};
use crate::store::OutboxError;

/// Where a session's attempt to open its forum post is journaled, in `meta`.
const ATTEMPT_PREFIX: &str = "forum-post:";
/// How far Discord's clock (a snowflake's time) may lag ours.
const CLOCK_SLACK_MS: i64 = 60_000;
/// Discord's epoch (2015-01-01) in Unix milliseconds: snowflakes count from it.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// What the sidecar knows of a channel sessions open threads in.
#[derive(Debug)]
pub(in crate::serve) struct Home {
    /// A forum: sessions open posts.
    pub(in crate::serve) forum: bool,
    name: String,
    guild: Option<Id<GuildMarker>>,
    /// The forum requires a tag on each post.
    require_tag: bool,
    /// The tag each post gets: none unless the forum requires one; then its
    /// first tag anyone may set (moderated ones need Manage Threads), else its first.
    tag: Option<Id<TagMarker>>,
}

impl Home {
    fn of(channel: &Channel) -> Self {
        let require_tag = channel.flags.is_some_and(|f| f.contains(ChannelFlags::REQUIRE_TAG));
        let tags = channel.available_tags.as_deref().unwrap_or_default();
        let tag = tags.iter().find(|t| !t.moderated).or(tags.first()).map(|t| t.id).filter(|_| require_tag);
        Self {
            forum: matches!(channel.kind, ChannelType::GuildForum | ChannelType::GuildMedia),
            name: channel.name.clone().unwrap_or_default(),
            guild: channel.guild_id,
            require_tag,
            tag,
        }
    }
}

/// The sidecar's forum state.
#[derive(Debug, Default)]
pub(in crate::serve) struct Forums {
    /// Each channel sessions open threads in, asked once per process (a
    /// channel's type does not change between text and forum).
    homes: SyncMutex<HashMap<Id<ChannelMarker>, Arc<Home>>>,
    /// The bot's user id, the owner of its posts.
    bot: SyncMutex<Option<Id<UserMarker>>>,
    /// Held while a post is looked for, opened and recorded.
    opening: tokio::sync::Mutex<()>,
}

impl Sidecar {
    /// What `channel` is (asked once per process).
    pub(in crate::serve) async fn home(
        &self,
        discord: &Discord,
        channel: Id<ChannelMarker>,
    ) -> Result<Arc<Home>, SendError> {
        if let Some(home) = self.forums.homes.lock().expect("homes lock").get(&channel) {
            return Ok(home.clone());
        }
        let home = Arc::new(Home::of(&discord.channel(channel).await?));
        if home.forum {
            match home.tag {
                Some(tag) => tracing::info!(%channel, %tag, "sessions open posts in a forum that requires a tag"),
                None => tracing::info!(%channel, "sessions open posts in a forum"),
            }
        }
        self.forums.homes.lock().expect("homes lock").insert(channel, home.clone());
        Ok(home)
    }

    /// Opens the post of `session_id` in `forum` (or finds the one an
    /// interrupted attempt opened) and records it as the session's thread
    /// and starter. Returns the post's id.
    #[allow(clippy::too_many_arguments)] // one call site, every argument a different fact
    pub(in crate::serve) async fn open_forum_post(
        &self,
        discord: &Discord,
        session_id: &str,
        forum: Id<ChannelMarker>,
        home: &Home,
        name: &str,
        card: &MessagePayload,
        named_with_prompt: bool,
    ) -> Result<Id<ChannelMarker>, SendError> {
        if home.require_tag && home.tag.is_none() {
            return Err(SendError::Rejected {
                status: 400,
                code: TAG_REQUIRED,
                message: format!(
                    "the forum #{} ({forum}) requires a tag on every post but has no tags: add one in the \
                     forum's settings (Tags), or turn off \"Require people to select tags when posting\"",
                    home.name
                ),
            });
        }
        let _opening = self.forums.opening.lock().await;
        let key = format!("{ATTEMPT_PREFIX}{session_id}");
        let earlier = self.with_outbox(|o| o.meta(&key)).map_err(unavailable)?;
        if let Some((since, asked)) = earlier.as_deref().and_then(parse_attempt)
            && let Some(post) = self.find_post(discord, forum, home, since, asked).await?
        {
            tracing::warn!(session_id, thread_id = %post, "an interrupted attempt had opened the forum post; using it");
            self.record_post(session_id, post, named_with_prompt, &key)?;
            return Ok(post);
        }
        // Journaled before the request: whatever becomes of its answer, the next attempt looks first.
        self.with_outbox(|o| o.set_meta(&key, &format!("{} {name}", now_ms()))).map_err(unavailable)?;
        crate::failpoint::hit("before_forum_post");
        let post = match discord.create_forum_post(forum, name, card, home.tag.as_slice()).await {
            Ok(post) => post,
            Err(err) => {
                // Refused: nothing was opened, so the next attempt need not look.
                if matches!(err, SendError::Rejected { .. }) {
                    let _ = self.with_outbox(|o| o.clear_meta(&key));
                }
                return Err(err);
            }
        };
        crate::failpoint::hit("after_forum_post_before_record");
        self.record_post(session_id, post, named_with_prompt, &key)?;
        tracing::info!(session_id, thread_id = %post, "forum post created");
        Ok(post)
    }

    /// The post an earlier attempt (at `since`, named `name`) opened, if
    /// Discord has it: among the active threads, or, should it have been
    /// archived since (a sidecar down for a day, a moderator), the forum's
    /// recently archived posts.
    async fn find_post(
        &self,
        discord: &Discord,
        forum: Id<ChannelMarker>,
        home: &Home,
        since: i64,
        name: &str,
    ) -> Result<Option<Id<ChannelMarker>>, SendError> {
        let Some(guild) = home.guild else { return Ok(None) };
        let bot = self.bot_user(discord).await?;
        let matching = |threads: Vec<Channel>| -> Option<Id<ChannelMarker>> {
            threads
                .into_iter()
                // Compared trimmed: Discord trims a channel name's ends.
                .filter(|t| t.parent_id == Some(forum) && t.owner_id == Some(bot))
                .filter(|t| t.name.as_deref().map(str::trim) == Some(name.trim()))
                .filter(|t| created_ms(t.id) + CLOCK_SLACK_MS >= since)
                .map(|t| t.id)
                .filter(|id| self.with_outbox(|o| o.session_by_thread(&id.to_string())).ok().flatten().is_none())
                .min()
        };
        if let Some(post) = matching(discord.active_threads(guild).await?) {
            return Ok(Some(post));
        }
        match discord.archived_public_threads(forum).await {
            Ok(archived) => Ok(matching(archived)),
            // Without Read Message History the archive stays unread; a post
            // archived since the attempt is then opened once more.
            Err(SendError::Rejected { status, message, .. }) => {
                tracing::warn!(status, %message, "cannot list the forum's archived posts; looked among the active ones only");
                Ok(None)
            }
            Err(err) => Err(err),
        }
    }

    async fn bot_user(&self, discord: &Discord) -> Result<Id<UserMarker>, SendError> {
        if let Some(bot) = *self.forums.bot.lock().expect("bot lock") {
            return Ok(bot);
        }
        let bot = discord.current_user_id().await?;
        *self.forums.bot.lock().expect("bot lock") = Some(bot);
        Ok(bot)
    }

    /// The post is the session's thread, and its first message (same id) the starter.
    fn record_post(
        &self,
        session_id: &str,
        post: Id<ChannelMarker>,
        named_with_prompt: bool,
        key: &str,
    ) -> Result<(), SendError> {
        let id = post.to_string();
        self.with_outbox(|o| {
            o.set_starter(session_id, &id)?;
            o.set_thread(session_id, &id)?;
            o.set_named_with_prompt(session_id, named_with_prompt)?;
            o.clear_meta(key)
        })
        .map_err(unavailable)
    }
}

fn unavailable(err: OutboxError) -> SendError {
    SendError::Unavailable { attempts: 0, last: err.to_string() }
}

/// `"<unix ms> <name>"`, as journaled before an attempt.
fn parse_attempt(raw: &str) -> Option<(i64, &str)> {
    let (since, name) = raw.split_once(' ')?;
    Some((since.parse().ok()?, name))
}

/// When Discord made `id` (Unix ms).
fn created_ms(id: Id<ChannelMarker>) -> i64 {
    i64::try_from(id.get() >> 22).unwrap_or(i64::MAX).saturating_add(DISCORD_EPOCH_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_and_snowflakes_read_back() {
        assert_eq!(
            parse_attempt("1700000000000 shop · fix the build"),
            Some((1_700_000_000_000, "shop · fix the build"))
        );
        assert_eq!(parse_attempt("garbage"), None);
        // Discord's documented example: 175928847299117063 was made at 2016-04-30 11:18:25.796 UTC.
        assert_eq!(created_ms(Id::new(175_928_847_299_117_063)), 1_462_015_105_796);
    }

    #[test]
    fn a_tag_is_chosen_only_when_the_forum_requires_one() {
        let forum = |flags: u64, tags: serde_json::Value| -> Channel {
            serde_json::from_value(serde_json::json!({
                "id": "5", "type": 15, "name": "ideas", "guild_id": "7", "flags": flags, "available_tags": tags,
            }))
            .unwrap()
        };
        let tags = serde_json::json!([
            {"id": "10", "name": "staff", "moderated": true, "emoji_id": null, "emoji_name": null},
            {"id": "11", "name": "omp", "moderated": false, "emoji_id": null, "emoji_name": null},
        ]);
        let free = Home::of(&forum(0, tags.clone()));
        assert!(free.forum && !free.require_tag && free.tag.is_none());
        let strict = Home::of(&forum(1 << 4, tags));
        assert_eq!(strict.tag, Some(Id::new(11)), "the first tag anyone may set");
        let bare = Home::of(&forum(1 << 4, serde_json::json!([])));
        assert!(bare.require_tag && bare.tag.is_none());
    }
}
