//! What forum channels need from Discord: the channel's type, flags and tags,
//! the bot's own id, a guild's active threads, and opening a post.

use omp_discord_core::embed::MessagePayload;
use serde_json::json;
use twilight_http::request::Request;
use twilight_http::routing::Route;
use twilight_model::channel::Channel;
use twilight_model::channel::thread::ThreadsListing;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, GuildMarker, TagMarker, UserMarker};

use super::error::Failure;
use super::{Discord, SendError, message_body};

impl Discord {
    /// A channel: its type, guild, flags and (for a forum) tags.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`]; [`UNKNOWN_CHANNEL`](super::codes::UNKNOWN_CHANNEL) for an unknown channel,
    /// [`MISSING_ACCESS`](super::codes::MISSING_ACCESS) when the bot cannot see it.
    pub async fn channel(&self, channel: Id<ChannelMarker>) -> Result<Channel, SendError> {
        self.get_json(&Route::GetChannel { channel_id: channel.get() }).await
    }

    /// The bot's own user id.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn current_user_id(&self) -> Result<Id<UserMarker>, SendError> {
        let user: twilight_model::user::CurrentUser = self.get_json(&Route::GetCurrentUser).await?;
        Ok(user.id)
    }

    /// The active (unarchived) threads of a guild, forum posts included.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn active_threads(&self, guild: Id<GuildMarker>) -> Result<Vec<Channel>, SendError> {
        let listing: ThreadsListing = self.get_json(&Route::GetActiveThreads { guild_id: guild.get() }).await?;
        Ok(listing.threads)
    }

    /// The most recently archived public threads of `channel` (Discord's
    /// first page: 50, newest archive first).
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`]; 403 without Read Message History.
    pub async fn archived_public_threads(&self, channel: Id<ChannelMarker>) -> Result<Vec<Channel>, SendError> {
        let route = Route::GetPublicArchivedThreads { before: None, channel_id: channel.get(), limit: None };
        let listing: ThreadsListing = self.get_json(&route).await?;
        Ok(listing.threads)
    }

    /// Opens a post in `forum`: a thread named `name` whose first message is
    /// `payload` (it gets the thread's id). Discord takes no nonce here, so
    /// this makes ONE attempt: a retry after a timeout or a 5xx could open a
    /// second post. The caller looks for a post the failed attempt may have
    /// opened before trying again.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`] (Unavailable after the one attempt); [`TAG_REQUIRED`](super::codes::TAG_REQUIRED) when the forum
    /// requires a tag and `tags` has none of its own.
    pub async fn create_forum_post(
        &self,
        forum: Id<ChannelMarker>,
        name: &str,
        payload: &MessagePayload,
        tags: &[Id<TagMarker>],
    ) -> Result<Id<ChannelMarker>, SendError> {
        let body = json!({
            "name": name,
            "auto_archive_duration": 1440,
            "message": message_body(payload),
            "applied_tags": tags,
        });
        let route = Route::CreateForumThread { channel_id: forum.get() };
        let request = Request::builder(&route).json(&body).build().expect("a JSON value always serializes");
        // Waiting for a turn in the queue sends nothing, so it may take as long
        // as elsewhere; a timeout after sending is what needs the search.
        let last = match self.attempt(self.client.request::<Channel>(request), self.policy.queued_deadline).await {
            Ok(thread) => return Ok(thread.id),
            Err(Failure::Fatal(err)) => return Err(err),
            Err(Failure::RateLimited) => {
                let pause = self.rate_limited();
                format!("rate limited (HTTP 429); every request pauses {} ms", pause.as_millis())
            }
            Err(Failure::Retry(reason)) => reason,
        };
        tracing::warn!(reason = %last, "opening a forum post failed; it is retried after a rest");
        Err(SendError::Unavailable { attempts: 1, last })
    }
}
