//! Discord's REST API through twilight-http, with what twilight leaves to us:
//! an overall deadline per request, a cap on retries, idempotent retries
//! through `nonce` + `enforce_nonce`, and Discord's error explained in words.
//! The one client for the sidecar and for the CLI (`setup`, `doctor`), which
//! differ only in how hard they try (see [`Discord::interactive`]).
//!
//! # Layout
//!
//! - this module: [`Discord`], its constructors and one method per endpoint
//!   the sidecar uses; message bodies.
//! - `forum`: what forum channels need (channel, tags, active and archived
//!   posts, opening a post).
//! - `request`: how one request goes out: deadlines, retries, pacing after
//!   429s, turns for routes that share a bucket; `get_json`/`send_json` for
//!   any route (the CLI's checks read JSON values); `Headroom` for `status`.
//! - `error`: [`SendError`] and Discord's error body in words.
//! - `codes`: Discord's JSON error codes that callers branch on.
//! - `gateway`: the gateway intents, and a connection for short waits (setup's).
//! - `permissions`: a member's permissions in a channel, computed as Discord does.

pub mod codes;
mod error;
mod forum;
pub mod gateway;
pub mod permissions;
mod request;

use std::future::IntoFuture;

use omp_discord_core::embed::MessagePayload;
use serde_json::Value;
use twilight_http::request::{Method, Request, TryIntoRequest};
use twilight_http::routing::Route;
use twilight_http_ratelimiting::Endpoint;
use twilight_model::channel::{Channel, Message};
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, MessageMarker, UserMarker};

pub use error::SendError;
use request::{Pacing, Policy, SiblingRoutes, client, once};

use crate::config::{ApiBase, Token, Webhook};

/// A Discord REST client: a bot's, or a webhook's in the webhook-only mode
/// (which can post and edit its own messages, nothing else).
#[derive(Debug)]
pub struct Discord {
    client: twilight_http::Client,
    webhook: Option<Webhook>,
    policy: Policy,
    pacing: std::sync::Mutex<Pacing>,
    siblings: SiblingRoutes,
}

impl Discord {
    /// Builds the sidecar's client for `token`, pointed at `api`.
    pub fn new(token: &Token, api: &ApiBase) -> Self {
        Self::with_policy(Some(token), None, api, Policy::SIDECAR)
    }

    /// Builds the sidecar's client that posts through `webhook` (no bot token).
    pub fn for_webhook(webhook: Webhook, api: &ApiBase) -> Self {
        Self::with_policy(None, Some(webhook), api, Policy::SIDECAR)
    }

    /// Builds a client for a person waiting at a terminal (`setup`, `doctor`):
    /// one attempt per request within 15 s, no retries. Without a token only
    /// routes that carry their own (a webhook's) work.
    pub fn interactive(token: Option<&Token>, api: &ApiBase) -> Self {
        Self::with_policy(token, None, api, Policy::INTERACTIVE)
    }

    fn with_policy(token: Option<&Token>, webhook: Option<Webhook>, api: &ApiBase, policy: Policy) -> Self {
        Self {
            client: client(token, api, policy),
            webhook,
            policy,
            pacing: std::sync::Mutex::default(),
            siblings: SiblingRoutes::default(),
        }
    }

    /// Posts `payload` to `channel` (a channel or a thread; a webhook posts to
    /// its own channel) and returns where the message is. The nonce makes a
    /// retried post return the first message instead of posting twice.
    ///
    /// # Errors
    ///
    /// [`SendError`] says whether Discord refused it, the token is bad, or Discord was unreachable.
    pub async fn create_message(
        &self,
        channel: Id<ChannelMarker>,
        payload: &MessagePayload,
        nonce: u64,
    ) -> Result<(Id<ChannelMarker>, Id<MessageMarker>), SendError> {
        if let Some(webhook) = &self.webhook {
            return self.execute_webhook(webhook, payload).await;
        }
        let mut body = message_body(payload);
        body["nonce"] = Value::String(nonce.to_string());
        body["enforce_nonce"] = Value::Bool(true);
        // twilight's typed builder has no `enforce_nonce`; the raw request keeps its rate limiter.
        let route = Route::CreateMessage { channel_id: channel.get() };
        let message: Message = match self.send_message(&route, &body, &payload.files).await {
            // Without Attach Files the message still goes out, saying what is missing.
            Err(SendError::Rejected { code: codes::MISSING_PERMISSIONS, .. }) if !payload.files.is_empty() => {
                tracing::warn!(%channel, "the bot may not attach files here; posting without them");
                let without = without_files(payload);
                let mut body = message_body(&without);
                body["nonce"] = Value::String(nonce.to_string());
                body["enforce_nonce"] = Value::Bool(true);
                self.send_json(&route, &body).await?
            }
            other => other?,
        };
        Ok((channel, message.id))
    }

    /// Replaces the text, embeds and components of a message the bot posted.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`]; [`codes::UNKNOWN_MESSAGE`] when the message is gone.
    pub async fn update_message(
        &self,
        channel: Id<ChannelMarker>,
        message: Id<MessageMarker>,
        payload: &MessagePayload,
    ) -> Result<(), SendError> {
        let mut body = message_body(payload);
        // An edit keeps the fields it does not name: an edit here replaces the whole message.
        if body.get("content").is_none() {
            body["content"] = Value::String(String::new());
        }
        if body.get("components").is_none() {
            body["components"] = Value::Array(Vec::new());
        }
        let route = match &self.webhook {
            Some(webhook) => Route::UpdateWebhookMessage {
                message_id: message.get(),
                thread_id: None,
                token: webhook.token(),
                webhook_id: webhook.id.get(),
            },
            None => Route::UpdateMessage { channel_id: channel.get(), message_id: message.get() },
        };
        if self.webhook.is_some() {
            let _: Message = self.send_message(&route, &body, &payload.files).await?;
            return Ok(());
        }
        let mut turn = self.sibling_turn(format!("edits:{channel}")).await;
        let edited: Result<Message, SendError> = self.send_message(&route, &body, &payload.files).await;
        *turn = Some(Endpoint { method: Method::Patch, path: format!("channels/{channel}/messages/{message}") });
        edited.map(drop)
    }

    /// Posts through the webhook and waits for the message (`?wait=true`).
    /// Webhooks take no nonce: a crash between the post and its record can
    /// post a message twice in this mode (never lose one).
    pub(crate) async fn execute_webhook(
        &self,
        webhook: &Webhook,
        payload: &MessagePayload,
    ) -> Result<(Id<ChannelMarker>, Id<MessageMarker>), SendError> {
        let body = message_body(payload);
        let route = Route::ExecuteWebhook {
            thread_id: None,
            token: webhook.token(),
            wait: Some(true),
            with_components: None,
            webhook_id: webhook.id.get(),
        };
        let message: Message = self.send_message(&route, &body, &payload.files).await?;
        Ok((message.channel_id, message.id))
    }

    /// Answers an interaction (within its 3 s, once).
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`]; 10062 when the interaction expired, 40060 when already answered.
    pub async fn interaction_callback(
        &self,
        interaction: Id<twilight_model::id::marker::InteractionMarker>,
        token: &str,
        body: &Value,
    ) -> Result<(), SendError> {
        let route = Route::InteractionCallback {
            interaction_id: interaction.get(),
            interaction_token: token,
            with_response: false,
        };
        let request = Request::builder(&route).json(body).build().expect("a JSON value always serializes");
        // One attempt: a retried callback would be refused as already acknowledged.
        once(self.client.request::<twilight_http::response::marker::EmptyBody>(request)).await
    }

    /// Replaces an interaction's original response (e.g. a deferred one),
    /// through its 15-minute token.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn edit_original_response(
        &self,
        application: Id<twilight_model::id::marker::ApplicationMarker>,
        token: &str,
        body: &Value,
    ) -> Result<(), SendError> {
        let route = Route::UpdateInteractionOriginal { application_id: application.get(), interaction_token: token };
        let _: Message = self.send_json(&route, body).await?;
        Ok(())
    }

    /// Renames a channel or thread (Discord allows two renames per 10 minutes).
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn rename_channel(&self, channel: Id<ChannelMarker>, name: &str) -> Result<(), SendError> {
        let body = serde_json::json!({ "name": name });
        let _: Channel = self.send_json(&Route::UpdateChannel { channel_id: channel.get() }, &body).await?;
        Ok(())
    }

    /// Starts a public thread from `message` in `channel`; returns the thread's id.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`]; code [`codes::THREAD_ALREADY_CREATED`] when the message already has one.
    pub async fn start_thread(
        &self,
        channel: Id<ChannelMarker>,
        message: Id<MessageMarker>,
        name: &str,
    ) -> Result<Id<ChannelMarker>, SendError> {
        let body = serde_json::json!({ "name": name, "auto_archive_duration": 1440 });
        let route = Route::CreateThreadFromMessage { channel_id: channel.get(), message_id: message.get() };
        let mut turn = self.sibling_turn(format!("threads:{channel}")).await;
        let thread: Result<Channel, SendError> = self.send_json(&route, &body).await;
        *turn = Some(Endpoint { method: Method::Post, path: format!("channels/{channel}/messages/{message}/threads") });
        Ok(thread?.id)
    }

    /// Shows "omp is typing…" in `channel` for about 10 s (or until the bot posts there).
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn typing(&self, channel: Id<ChannelMarker>) -> Result<(), SendError> {
        once(self.client.create_typing_trigger(channel).into_future()).await
    }

    /// Adds the bot's reaction `emoji` (a Unicode emoji) to a message.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn react(
        &self,
        channel: Id<ChannelMarker>,
        message: Id<MessageMarker>,
        emoji: &str,
    ) -> Result<(), SendError> {
        let emoji = twilight_http::request::channel::reaction::RequestReactionType::Unicode { name: emoji };
        let endpoint = TryIntoRequest::try_into_request(self.client.create_reaction(channel, message, &emoji))
            .map(|r| Endpoint { method: r.method(), path: r.path().split('?').next().unwrap_or_default().to_owned() })
            .ok();
        let mut turn = self.sibling_turn(format!("reactions:{channel}")).await;
        let result = once(self.client.create_reaction(channel, message, &emoji).into_future()).await;
        *turn = endpoint;
        result
    }

    /// Up to `limit` (1–100) of a channel's newest messages, older than `before` when given.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`]; [`codes::UNKNOWN_CHANNEL`] for an unknown channel,
    /// [`codes::MISSING_ACCESS`] when the bot cannot see it.
    pub async fn channel_messages(
        &self,
        channel: Id<ChannelMarker>,
        limit: u8,
        before: Option<Id<MessageMarker>>,
    ) -> Result<Vec<Message>, SendError> {
        let route = Route::GetMessages {
            after: None,
            around: None,
            before: before.map(Id::get),
            channel_id: channel.get(),
            limit: Some(u16::from(limit.clamp(1, 100))),
        };
        self.get_json(&route).await
    }

    /// Up to `limit` (1–100) of a channel's messages newer than `after`, oldest first.
    ///
    /// # Errors
    ///
    /// As [`Discord::channel_messages`].
    pub async fn channel_messages_after(
        &self,
        channel: Id<ChannelMarker>,
        after: Id<MessageMarker>,
        limit: u8,
    ) -> Result<Vec<Message>, SendError> {
        let route = Route::GetMessages {
            after: Some(after.get()),
            around: None,
            before: None,
            channel_id: channel.get(),
            limit: Some(u16::from(limit.clamp(1, 100))),
        };
        let mut messages: Vec<Message> = self.get_json(&route).await?;
        messages.sort_by_key(|m| m.id);
        Ok(messages)
    }

    /// Replaces the application's commands in `guild` with `commands` (Discord's bulk overwrite).
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn set_guild_commands(
        &self,
        application: Id<twilight_model::id::marker::ApplicationMarker>,
        guild: Id<twilight_model::id::marker::GuildMarker>,
        commands: &Value,
    ) -> Result<(), SendError> {
        let route = Route::SetGuildCommands { application_id: application.get(), guild_id: guild.get() };
        let _: Value = self.send_json(&route, commands).await?;
        Ok(())
    }

    /// The guilds the bot is in (the first 200, more than any bridge needs).
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn guilds(&self) -> Result<Vec<twilight_model::user::CurrentUserGuild>, SendError> {
        self.get_json(&Route::GetGuilds { after: None, before: None, limit: Some(200), shard: None }).await
    }

    /// A guild's channels.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn guild_channels(
        &self,
        guild: Id<twilight_model::id::marker::GuildMarker>,
    ) -> Result<Vec<Channel>, SendError> {
        self.get_json(&Route::GetChannels { guild_id: guild.get() }).await
    }

    /// The application's owner (for a team, its owner), who may always drive sessions.
    ///
    /// # Errors
    ///
    /// As [`Discord::create_message`].
    pub async fn application_owner(&self) -> Result<Option<Id<UserMarker>>, SendError> {
        let application = self.with_retries(|| self.client.current_user_application().into_future()).await?;
        let application: twilight_model::oauth::Application = application;
        Ok(application.team.map(|team| team.owner_user_id).or(application.owner.map(|owner| owner.id)))
    }
}

/// Discord's JSON body for `payload`: its files become `attachments`
/// entries (their bytes travel as multipart parts), and mentions never ping,
/// whatever the caller set.
fn message_body(payload: &MessagePayload) -> Value {
    let mut body = serde_json::to_value(payload).expect("payloads serialize");
    if let Some(object) = body.as_object_mut() {
        object.remove("files");
    }
    if !payload.files.is_empty() {
        let attachments: Vec<Value> = payload
            .files
            .iter()
            .enumerate()
            .map(|(index, file)| serde_json::json!({ "id": index, "filename": file.filename }))
            .collect();
        body["attachments"] = Value::Array(attachments);
    }
    body["allowed_mentions"] = serde_json::json!({ "parse": [] });
    body
}

/// `payload` without its files, saying in its text which ones are missing and why.
fn without_files(payload: &MessagePayload) -> MessagePayload {
    let names: Vec<&str> = payload.files.iter().map(|f| f.filename.as_str()).collect();
    let note =
        format!("({} not attached: the bot lacks the Attach Files permission in this channel)", names.join(", "));
    let mut out = MessagePayload { files: Vec::new(), ..payload.clone() };
    let content = out.content.take().unwrap_or_default();
    let room = omp_discord_core::embed::limits::CONTENT.saturating_sub(note.chars().count() + 1);
    let kept = omp_discord_core::embed::truncate_chars(&content, room);
    out.content = Some(if kept.is_empty() { note } else { format!("{kept}\n{note}") });
    out
}
