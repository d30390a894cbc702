//! Discord's REST API through twilight-http, with what twilight leaves to us:
//! an overall deadline per request, a cap on retries, idempotent retries
//! through `nonce` + `enforce_nonce`, and Discord's error explained in words.

use std::future::{Future, IntoFuture};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use omp_discord_core::embed::{FileUpload, MessagePayload};
use serde::de::DeserializeOwned;
use serde_json::Value;
use twilight_http::error::ErrorType;
use twilight_http::request::{Form, Method, Request, TryIntoRequest};
use twilight_http::response::{Response, ResponseFuture};
use twilight_http::routing::Route;
use twilight_http_ratelimiting::Endpoint;
use twilight_model::channel::{Channel, Message};
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, MessageMarker, UserMarker};

use crate::config::{ApiBase, Token, Webhook};

// Forum posts: a child module, so it shares the client's pacing and retry helpers.
mod forum;

/// Attempts per request (the first plus retries) for 5xx answers and timeouts.
const MAX_ATTEMPTS: u32 = 4;
/// Deadline of one HTTP attempt (twilight-http enforces it).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one attempt may also wait for its turn in twilight's rate-limit
/// queue: a backlog of starter posts in one channel (5 per 5 s) takes a while,
/// and giving up earlier would only send the request to the back of the queue.
const RATE_LIMIT_QUEUE_WAIT: Duration = Duration::from_secs(30);
/// Deadline of one attempt of a request, its turn in the queue included.
const QUEUED_ATTEMPT_DEADLINE: Duration =
    Duration::from_secs(RATE_LIMIT_QUEUE_WAIT.as_secs() + ATTEMPT_TIMEOUT.as_secs());
/// First retry delay, doubled per retry.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Pause after a 429 that twilight cannot pace (a global one, or one without
/// rate-limit headers, as Cloudflare sends); doubled per 429 in a row.
const FIRST_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(1);
/// The longest such pause.
const MAX_RATE_LIMIT_PAUSE: Duration = Duration::from_secs(30);
/// Discord's "Missing Permissions".
const MISSING_PERMISSIONS: u64 = 50_013;
/// Discord's code for "a thread has already been created for this message".
pub const THREAD_ALREADY_CREATED: u64 = 160_004;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Discord refused the request; retrying would not help.
    #[error("Discord refused the request (HTTP {status}, code {code}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Discord's JSON error code (0 when absent).
        code: u64,
        /// Discord's message, with the `errors` tree flattened into `path: reason`.
        message: String,
    },
    /// The token was refused.
    #[error(
        "Discord refused the bot token (HTTP 401): check OMP_DISCORD_TOKEN, or reset the token in the Developer Portal"
    )]
    Unauthorized,
    /// Discord kept failing or could not be reached.
    #[error("Discord could not be reached after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure, without URLs or tokens.
        last: String,
    },
}

impl SendError {
    /// Discord's error code, when Discord refused the request.
    pub fn code(&self) -> Option<u64> {
        match self {
            Self::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// The sidecar's Discord REST client: a bot's, or a webhook's in the
/// webhook-only mode (which can post and edit its own messages, nothing else).
#[derive(Debug)]
pub struct Discord {
    client: twilight_http::Client,
    webhook: Option<Webhook>,
    pacing: std::sync::Mutex<Pacing>,
    siblings: SiblingRoutes,
}

/// Routes whose path names a message (edit it, start a thread from it, react
/// to it) share one bucket per channel at Discord, but twilight-http learns buckets
/// per path: every new message id would go out unpaced and meet a 429. Such
/// requests take turns per channel here, and each waits until the bucket the
/// previous one reported has room.
#[derive(Debug, Default)]
struct SiblingRoutes {
    /// Per `kind:channel`: the last request's endpoint, whose bucket twilight knows.
    last: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<Option<Endpoint>>>>>,
}

/// Our own pause after 429s, on top of twilight's per-bucket pacing: every
/// request of this client waits until `until`.
#[derive(Debug, Default)]
struct Pacing {
    until: Option<Instant>,
    /// The pause the next 429 in a row gets.
    next: Duration,
    /// When the last pause began.
    last_pause: Option<Instant>,
    /// 429s answered since start.
    limited: u64,
}

/// How close the sidecar is to Discord's limits, for `status`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Headroom {
    /// 429s answered since start (twilight paces by the headers, so these should stay rare).
    pub rate_limited: u64,
    /// How long every request still waits after the last 429s, in ms.
    pub paused_ms: u64,
    /// The home channel's message bucket as last reported by Discord: remaining
    /// of limit; `None` when no post used it within its window (it is full).
    pub home_messages: Option<(u16, u16)>,
    /// When that bucket refills, in ms from now.
    pub home_messages_reset_ms: Option<u64>,
}

impl Discord {
    /// Builds a client for `token`, pointed at `api`.
    pub fn new(token: &Token, api: &ApiBase) -> Self {
        Self {
            client: client(Some(token), api),
            webhook: None,
            pacing: std::sync::Mutex::default(),
            siblings: SiblingRoutes::default(),
        }
    }

    /// Builds a client that posts through `webhook` (no bot token).
    pub fn for_webhook(webhook: Webhook, api: &ApiBase) -> Self {
        Self {
            client: client(None, api),
            webhook: Some(webhook),
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
            Err(SendError::Rejected { code: MISSING_PERMISSIONS, .. }) if !payload.files.is_empty() => {
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
    /// As [`Discord::create_message`]; code 10008 when the message is gone.
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
    async fn execute_webhook(
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
    /// As [`Discord::create_message`]; code [`THREAD_ALREADY_CREATED`] when the message already has one.
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
    /// As [`Discord::create_message`]; 10003 for an unknown channel, 50001 when the bot cannot see it.
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

    /// One JSON request through twilight's raw path (its rate limiter
    /// included), with [`Discord::with_retries`]'s deadlines and retry cap.
    async fn send_json<T: DeserializeOwned + Unpin + Send + 'static>(
        &self,
        route: &Route<'_>,
        body: &Value,
    ) -> Result<T, SendError> {
        self.with_retries(|| {
            let request = Request::builder(route).json(body).build().expect("a JSON value always serializes");
            self.client.request::<T>(request)
        })
        .await
    }

    /// A message body as JSON, or with its files as multipart
    /// (`payload_json` plus `files[n]`), as [`Discord::send_json`].
    async fn send_message<T: DeserializeOwned + Unpin + Send + 'static>(
        &self,
        route: &Route<'_>,
        body: &Value,
        files: &[FileUpload],
    ) -> Result<T, SendError> {
        if files.is_empty() {
            return self.send_json(route, body).await;
        }
        let json = serde_json::to_vec(body).expect("a JSON value always serializes");
        self.with_retries(|| {
            let mut form = Form::new().json_part(b"payload_json", &json);
            for (index, file) in files.iter().enumerate() {
                let name = format!("files[{index}]");
                form = form.file_part(name.as_bytes(), file.filename.as_bytes(), file.content.as_bytes());
            }
            let request = Request::builder(route).form(form).build().expect("a form always builds");
            self.client.request::<T>(request)
        })
        .await
    }

    /// One GET through twilight's raw path, as [`Discord::send_json`].
    async fn get_json<T: DeserializeOwned + Unpin + Send + 'static>(&self, route: &Route<'_>) -> Result<T, SendError> {
        self.with_retries(|| self.client.request::<T>(Request::from_route(route))).await
    }

    /// Runs one request with a deadline per attempt, retrying 5xx answers
    /// and network failures with backoff, and 429s after our own pause.
    async fn with_retries<T, F>(&self, mut attempt: F) -> Result<T, SendError>
    where
        T: DeserializeOwned + Unpin + Send + 'static,
        F: FnMut() -> ResponseFuture<T>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut last = String::new();
        for n in 1..=MAX_ATTEMPTS {
            match self.attempt(attempt(), QUEUED_ATTEMPT_DEADLINE).await {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(err)) => return Err(err),
                Err(Failure::RateLimited) => {
                    let pause = self.rate_limited();
                    last = format!("rate limited (HTTP 429); every request pauses {} ms", pause.as_millis());
                    tracing::warn!(attempt = n, reason = %last, "discord request failed, will retry");
                    continue;
                }
                Err(Failure::Retry(reason)) => last = reason,
            }
            tracing::warn!(attempt = n, reason = %last, "discord request failed, will retry");
            if n < MAX_ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Err(SendError::Unavailable { attempts: MAX_ATTEMPTS, last })
    }

    /// One attempt of `request` once the pause after recent 429s is over,
    /// within `deadline` (its wait in twilight's queue included), with
    /// twilight's own retry of a 429 cancelled.
    async fn attempt<T: DeserializeOwned + Unpin + Send + 'static>(
        &self,
        request: ResponseFuture<T>,
        deadline: Duration,
    ) -> Result<T, Failure> {
        self.paced().await;
        tokio::time::timeout(deadline, model(first_attempt_only(request)))
            .await
            .unwrap_or_else(|_| Err(Failure::Retry("the request timed out".to_owned())))
    }

    /// Takes this channel's turn for a sibling route (see [`SiblingRoutes`]),
    /// then waits until the bucket the previous request reported has room.
    /// The caller records its own path in the guard once answered.
    async fn sibling_turn(&self, key: String) -> tokio::sync::OwnedMutexGuard<Option<Endpoint>> {
        let slot = self.siblings.last.lock().expect("siblings lock").entry(key).or_default().clone();
        let turn = slot.lock_owned().await;
        if let (Some(endpoint), Some(limiter)) = (turn.as_ref(), self.client.ratelimiter())
            && let Some(bucket) = limiter.bucket(endpoint.clone()).await.filter(|b| b.remaining == 0)
        {
            tokio::time::sleep_until(bucket.reset_at.into()).await;
        }
        turn
    }

    /// Waits out the pause after recent 429s.
    async fn paced(&self) {
        let until = self.pacing.lock().expect("pacing lock").until;
        if let Some(until) = until.filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(until.into()).await;
        }
    }

    /// Records a 429 and starts the pause every request waits out, doubled when
    /// a 429 answers the first requests after the previous pause (the storm goes on).
    fn rate_limited(&self) -> Duration {
        let mut pacing = self.pacing.lock().expect("pacing lock");
        pacing.limited += 1;
        let now = Instant::now();
        if let Some(until) = pacing.until.filter(|u| *u > now) {
            // Sent before the pause began (several destinations meet the same
            // storm at once): the pause already covers it; doubling here would
            // stretch it to its cap after one round.
            return until - now;
        }
        // In a row: the first requests after the last pause met a 429 again.
        // (Not reset by a success in between: a route the storm spares, a
        // GET, says nothing about the one that keeps being refused.)
        let calm_since = pacing.last_pause.is_none_or(|began| now - began > pacing.next * 2);
        let pause = if calm_since { FIRST_RATE_LIMIT_PAUSE } else { pacing.next.max(FIRST_RATE_LIMIT_PAUSE) };
        pacing.next = (pause * 2).min(MAX_RATE_LIMIT_PAUSE);
        pacing.until = Some(now + pause);
        pacing.last_pause = Some(now);
        pause
    }

    /// How close to Discord's limits the sidecar runs (`home`: the home channel, if any).
    pub async fn headroom(&self, home: Option<Id<ChannelMarker>>) -> Headroom {
        let (rate_limited, paused_ms) = {
            let pacing = self.pacing.lock().expect("pacing lock");
            let left = pacing.until.map(|u| u.saturating_duration_since(Instant::now())).unwrap_or_default();
            (pacing.limited, u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
        };
        let bucket = match (self.client.ratelimiter(), home) {
            (Some(limiter), Some(home)) => {
                let path = format!("channels/{home}/messages");
                limiter.bucket(Endpoint { method: Method::Post, path }).await
            }
            _ => None,
        };
        Headroom {
            rate_limited,
            paused_ms,
            home_messages: bucket.map(|b| (b.remaining, b.limit)),
            home_messages_reset_ms: bucket.map(|b| {
                u64::try_from(b.reset_at.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(u64::MAX)
            }),
        }
    }
}

/// Lets twilight send a request once: it retries a 429 by itself, at once
/// when the 429 is global or carries no rate-limit headers, which would
/// hammer Discord. Its retry is cancelled instead (`RequestCanceled`), and
/// [`Discord::with_retries`] pauses before trying again.
fn first_attempt_only<T>(mut future: ResponseFuture<T>) -> ResponseFuture<T> {
    let sent = Arc::new(AtomicBool::new(false));
    future.set_pre_flight(move || !sent.swap(true, Ordering::SeqCst));
    future
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

fn client(token: Option<&Token>, api: &ApiBase) -> twilight_http::Client {
    let mut builder = twilight_http::Client::builder()
        .timeout(ATTEMPT_TIMEOUT)
        // A 401 is reported and the token can be fixed without a restart.
        .remember_invalid_token(false);
    if let Some(token) = token {
        builder = builder.token(token.expose().to_owned());
    }
    if let Some(proxy) = &api.proxy {
        builder = builder.proxy(proxy.clone(), api.plain_http);
    }
    builder.build()
}

/// A request that must not be repeated (a reaction, an interaction's one
/// answer): one attempt with a deadline, its failure in our terms.
async fn once<T>(response: impl Future<Output = Result<Response<T>, twilight_http::Error>>) -> Result<(), SendError> {
    match tokio::time::timeout(ATTEMPT_TIMEOUT, response).await {
        Err(_) => Err(SendError::Unavailable { attempts: 1, last: "the request timed out".into() }),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => match Failure::from(err) {
            Failure::Fatal(err) => Err(err),
            Failure::Retry(last) => Err(SendError::Unavailable { attempts: 1, last }),
            Failure::RateLimited => Err(SendError::Unavailable { attempts: 1, last: "rate limited (HTTP 429)".into() }),
        },
    }
}

async fn model<T: DeserializeOwned + Unpin + Send + 'static>(
    response: impl Future<Output = Result<Response<T>, twilight_http::Error>>,
) -> Result<T, Failure> {
    let response = response.await?;
    response.model().await.map_err(|_| Failure::Retry("Discord's answer could not be read".to_owned()))
}

enum Failure {
    Fatal(SendError),
    Retry(String),
    /// Discord answered 429 (twilight's own retry was cancelled).
    RateLimited,
}

impl From<twilight_http::Error> for Failure {
    fn from(err: twilight_http::Error) -> Self {
        match err.kind() {
            ErrorType::Unauthorized => Self::Fatal(SendError::Unauthorized),
            ErrorType::Response { body, status, .. } => {
                let status = status.get();
                if status == 401 {
                    return Self::Fatal(SendError::Unauthorized);
                }
                if status >= 500 || status == 429 {
                    return Self::Retry(format!("HTTP {status}"));
                }
                let (code, message) = describe_api_error(body);
                Self::Fatal(SendError::Rejected { status, code, message })
            }
            ErrorType::RequestTimedOut => Self::Retry("the request timed out".to_owned()),
            // Only our pre-flight check cancels: twilight was about to retry a 429.
            ErrorType::RequestCanceled => Self::RateLimited,
            ErrorType::RequestError => Self::Retry("the connection to Discord failed".to_owned()),
            _ => Self::Retry("Discord's answer could not be read".to_owned()),
        }
    }
}

/// Discord's `{code, message, errors}` as one line: `Invalid Form Body
/// (embeds.0.description: Must be 4096 or fewer in length.)`.
pub fn describe_api_error(body: &[u8]) -> (u64, String) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return (0, "unreadable error body".to_owned());
    };
    let code = value["code"].as_u64().unwrap_or(0);
    let mut message = value["message"].as_str().unwrap_or("no message").to_owned();
    let mut details = Vec::new();
    flatten_errors(&value["errors"], &mut String::new(), &mut details);
    if !details.is_empty() {
        message = format!("{message} ({})", details.join("; "));
    }
    (code, message)
}

fn flatten_errors(node: &Value, path: &mut String, out: &mut Vec<String>) {
    let Some(object) = node.as_object() else { return };
    for (key, child) in object {
        if key == "_errors" {
            for error in child.as_array().into_iter().flatten() {
                let reason = error["message"].as_str().unwrap_or("invalid");
                out.push(format!("{path}: {reason}"));
            }
            continue;
        }
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        flatten_errors(child, path, out);
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_errors_are_flattened() {
        let body = br#"{"code":50035,"message":"Invalid Form Body","errors":{"embeds":{"0":{"description":{"_errors":[{"code":"BASE_TYPE_MAX_LENGTH","message":"Must be 4096 or fewer in length."}]}}}}}"#;
        let (code, message) = describe_api_error(body);
        assert_eq!(code, 50035);
        assert_eq!(message, "Invalid Form Body (embeds.0.description: Must be 4096 or fewer in length.)");
    }

    #[test]
    fn plain_errors_keep_their_message() {
        assert_eq!(
            describe_api_error(br#"{"code":10003,"message":"Unknown Channel"}"#),
            (10003, "Unknown Channel".into())
        );
        assert_eq!(describe_api_error(b"<html>").0, 0);
    }

    proptest::proptest! {
        /// Whatever body an error answer has (a proxy's HTML, truncated or
        /// odd JSON, an `errors` tree as deep as JSON parsing allows), it is
        /// described without panicking.
        #[test]
        fn any_error_body_is_described(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            depth in 0usize..200,
            code in proptest::prelude::any::<i64>(),
        ) {
            let _ = describe_api_error(&bytes);
            let nested = format!(
                r#"{{"code":{code},"message":"x","errors":{}{{"_errors":[{{"message":"deep"}}]}}{}}}"#,
                r#"{"a":"#.repeat(depth),
                "}".repeat(depth)
            );
            let (found, message) = describe_api_error(nested.as_bytes());
            if depth < 120 {
                proptest::prop_assert_eq!(found, u64::try_from(code).unwrap_or(0));
                proptest::prop_assert!(message.contains("deep"), "{message}");
            }
        }
    }
}
