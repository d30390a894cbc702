//! Intake: a client's `notify` is checked, redacted, routed to its destination and journaled,
//! in frame order; the sidecar's own messages about a session are journaled the same way.

use super::{Sidecar, now_ms, parse_id};
use crate::store::{Journaled, Outbox, OutboxError};
use omp_discord_core::embed::{MessagePayload, redact_payload, validate_message};
use omp_discord_core::protocol::SessionRef;
use omp_discord_core::protocol::{ErrorCode, NotifyRequest, ServerFrame};
use omp_discord_core::redact::redact_text;
use tokio::sync::oneshot;
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;

/// Where a journaled row goes. Stored as text in the journal: `session:<id>`,
/// `channel:<id>` or `webhook` ([`Display`](std::fmt::Display) and [`Destination::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Destination {
    /// A session's thread (opened on first use).
    Session(String),
    /// A channel, by id.
    Channel(Id<ChannelMarker>),
    /// The webhook-only mode's one channel, the webhook's.
    Webhook,
}

const SESSION_PREFIX: &str = "session:";
const CHANNEL_PREFIX: &str = "channel:";
const WEBHOOK: &str = "webhook";

impl Destination {
    /// Reads a destination as the journal stores it.
    pub(super) fn parse(raw: &str) -> Option<Self> {
        if let Some(session) = raw.strip_prefix(SESSION_PREFIX) {
            return Some(Self::Session(session.to_owned()));
        }
        if let Some(channel) = raw.strip_prefix(CHANNEL_PREFIX) {
            return parse_id(channel).map(Self::Channel);
        }
        (raw == WEBHOOK).then_some(Self::Webhook)
    }
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Session(id) => write!(f, "{SESSION_PREFIX}{id}"),
            Self::Channel(id) => write!(f, "{CHANNEL_PREFIX}{id}"),
            Self::Webhook => f.write_str(WEBHOOK),
        }
    }
}

/// Why a notification has nowhere to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteError {
    /// A channel was named, but the webhook-only mode posts only to its webhook's channel.
    WebhookOnly,
    /// The named channel is not a Discord id.
    NotAChannelId,
}

/// Where a client's notification goes: the channel it names, else the
/// session's thread (with threads on), else the project's channel
/// (`project_channel`) or the home channel. `home` is `None` in the
/// webhook-only mode.
pub(super) fn route(
    requested: Option<&str>,
    home: Option<Id<ChannelMarker>>,
    threads: bool,
    session_id: &str,
    project_channel: impl FnOnce() -> Option<Id<ChannelMarker>>,
) -> Result<Destination, RouteError> {
    match (requested, home) {
        (Some(_), None) => Err(RouteError::WebhookOnly),
        (None, None) => Ok(Destination::Webhook),
        (Some(raw), Some(_)) => parse_id(raw).map(Destination::Channel).ok_or(RouteError::NotAChannelId),
        (None, Some(_)) if threads => Ok(Destination::Session(session_id.to_owned())),
        (None, Some(home)) => Ok(Destination::Channel(project_channel().unwrap_or(home))),
    }
}

impl Sidecar {
    /// Journals a notification, tells the client it is accepted, then waits
    /// for the delivery loop to report the outcome.
    /// Validates and journals a notification. Called in frame order on the
    /// connection (never from a spawned task), so the journal keeps each
    /// client's order. Returns the journal position and a receiver for the
    /// outcome, or the error frame to send.
    pub(super) fn accept(&self, request: NotifyRequest, host: &str) -> Result<Answered, Box<ServerFrame>> {
        let id = request.id.clone();
        let error = |code, message: String| Box::new(ServerFrame::Error { id: Some(id.clone()), code, message });
        let home = match (&self.discord, self.config.home_channel) {
            (Some(_), Some(channel)) => Some(channel),
            _ if self.webhook.is_some() => None,
            _ => {
                return Err(error(
                    ErrorCode::NotConfigured,
                    "omp-discord serve has no Discord bot token and home channel, nor a webhook: set \
                     OMP_DISCORD_TOKEN and OMP_DISCORD_CHANNEL_ID (or OMP_DISCORD_WEBHOOK_URL), then restart it \
                     (`omp-discord stop`)"
                        .to_owned(),
                ));
            }
        };
        // A notification journaled before (its client lost our `accepted`) is answered, not journaled again.
        if let Some(key) = request.idempotency_key.as_deref() {
            match self.with_outbox(|outbox| self.answer_repeat(outbox, key, &id)) {
                Ok(Some(answered)) => return Ok(answered),
                Ok(None) => {}
                Err(err) => return Err(error(ErrorCode::DiscordUnavailable, not_accepted(&err))),
            }
        }
        let mut payload = request.message;
        // The shim redacted already; redact again so no client can bypass it.
        redact_payload(&mut payload);
        self.observe_card(&request.session.id, request.key.as_deref(), request.edit, &mut payload);
        if let Err(err) = validate_message(&payload) {
            return Err(error(ErrorCode::InvalidMessage, err.to_string()));
        }
        let body = serde_json::to_string(&payload).expect("payloads serialize");
        let nonce = fresh_nonce(&request.session.id, &id).to_string();
        let (done, outcome) = oneshot::channel();
        let session = &request.session;
        let destination = match route(request.channel_id.as_deref(), home, self.config.threads, &session.id, || {
            self.config.channel_for(session.cwd.as_deref().unwrap_or_default())
        }) {
            Ok(destination) => destination.to_string(),
            Err(RouteError::WebhookOnly) => {
                return Err(error(
                    ErrorCode::NotConfigured,
                    "the webhook-only mode posts only to its webhook's channel; posting to other channels needs \
                     a bot token (OMP_DISCORD_TOKEN)"
                        .to_owned(),
                ));
            }
            Err(RouteError::NotAChannelId) => {
                let raw = request.channel_id.as_deref().unwrap_or_default();
                return Err(error(ErrorCode::UnknownChannel, format!("{:?} is not a channel id", redact_text(raw))));
            }
        };
        let idempotency_key = request.idempotency_key.as_deref();
        let journaled = self.with_outbox(|outbox| {
            let now = now_ms();
            let seq = outbox.atomically(|outbox| {
                // Checked again inside the transaction: another connection may have just journaled it.
                if let Some(repeat) = idempotency_key.map(|key| outbox.journaled(key)).transpose()?.flatten() {
                    return Ok(Err(repeat));
                }
                record_session(outbox, session, host, now)?;
                let seq = outbox.enqueue(&destination, &session.id, &id, &body, &nonce, now)?;
                if request.key.is_some() {
                    outbox.set_key(seq, request.key.as_deref(), request.edit)?;
                }
                if let Some(key) = idempotency_key {
                    outbox.set_idempotency_key(seq, key)?;
                }
                Ok(Ok(seq))
            })?;
            match seq {
                Ok(seq) => {
                    // Registered under the same lock, so the delivery loop cannot finish first unseen.
                    self.delivery.wait_for(seq, done);
                    Ok(Ok(seq))
                }
                Err(repeat) => Ok(Err(self.answer_journaled(repeat, &id))),
            }
        });
        match journaled {
            Ok(Err(answered)) => Ok(answered),
            Ok(Ok(seq)) => {
                crate::failpoint::hit("after_journal");
                tracing::debug!(seq, request_id = %id, "message journaled");
                self.typing.observe(&session.id, request.key.as_deref(), request.edit, &payload);
                self.delivery.wake.notify_one();
                Ok((seq, outcome))
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot journal a message");
                Err(error(ErrorCode::DiscordUnavailable, not_accepted(&err)))
            }
        }
    }

    /// The answer to a notification whose idempotency key the journal holds
    /// already, or `None` when it does not.
    fn answer_repeat(&self, outbox: &mut Outbox, key: &str, request_id: &str) -> Result<Option<Answered>, OutboxError> {
        Ok(outbox.journaled(key)?.map(|repeat| self.answer_journaled(repeat, request_id)))
    }

    /// Answers a repeated notification as the first one was (same `seq`):
    /// its outcome now if it has one, else when the delivery loop reports it.
    /// Called with the outbox locked, so a pending row cannot finish unseen.
    fn answer_journaled(&self, repeat: Journaled, request_id: &str) -> Answered {
        let (done, outcome) = oneshot::channel();
        let id = request_id.to_owned();
        let seq = match repeat {
            Journaled::Pending { seq } => {
                self.delivery.wait_for(seq, done);
                seq
            }
            Journaled::Delivered { seq, channel_id, message_id } => {
                let _ = done.send(ServerFrame::Delivered { id, channel_id, message_id });
                seq
            }
            Journaled::Failed { seq, code, error } => {
                let code =
                    serde_json::from_value(serde_json::Value::String(code)).unwrap_or(ErrorCode::DiscordRejected);
                let _ = done.send(ServerFrame::Error { id: Some(id), code, message: error });
                seq
            }
        };
        tracing::debug!(seq, request_id, "a notification journaled before was sent again; answered, not journaled");
        (seq, outcome)
    }

    /// Journals a message the sidecar itself sends for a session (approval
    /// requests and their outcome), with no client waiting for it.
    /// Where the sidecar's own messages about `session_id` go.
    pub(super) fn destination_for_session(&self, session_id: &str) -> Destination {
        match self.config.home_channel {
            _ if self.webhook.is_some() => Destination::Webhook,
            Some(home) if !self.config.threads => {
                let cwd = self.with_outbox(|o| o.session(session_id)).ok().flatten().and_then(|s| s.cwd);
                Destination::Channel(self.config.channel_for(cwd.as_deref().unwrap_or_default()).unwrap_or(home))
            }
            _ => Destination::Session(session_id.to_owned()),
        }
    }

    pub(super) fn journal_for_session(
        &self,
        session_id: &str,
        key: &str,
        edit: bool,
        payload: &MessagePayload,
    ) -> Result<(), OutboxError> {
        let destination = self.destination_for_session(session_id).to_string();
        let body = serde_json::to_string(payload).expect("payloads serialize");
        let nonce = fresh_nonce(session_id, key).to_string();
        self.with_outbox(|o| {
            let seq = o.enqueue(&destination, session_id, key, &body, &nonce, now_ms())?;
            o.set_key(seq, Some(key), edit)
        })?;
        self.delivery.wake.notify_one();
        Ok(())
    }
}

/// A journaled notification: its position, and where its outcome will come.
pub(super) type Answered = (i64, oneshot::Receiver<ServerFrame>);

fn not_accepted(err: &OutboxError) -> String {
    format!("the message was not accepted: {err}; check the state directory's disk space and permissions")
}

/// Records a session the sidecar hears of (a notify, an attach, an approval),
/// with the nonce its thread's starter message will use.
/// The prompt and directory are redacted again, so no client can bypass it.
pub(super) fn record_session(
    outbox: &mut Outbox,
    session: &SessionRef,
    host: &str,
    now: i64,
) -> Result<(), OutboxError> {
    let starter_nonce = fresh_nonce(&session.id, "starter").to_string();
    let prompt = session.prompt.as_deref().map(redact_text);
    let cwd = session.cwd.as_deref().map(redact_text);
    outbox.touch_session(&session.id, cwd.as_deref(), prompt.as_deref(), host, &starter_nonce, now)
}

/// A random nonce for one request; `Discord::create_message` reuses it for
/// that request's retries. (A u64 has at most 20 digits; Discord allows 25.)
pub(super) fn fresh_nonce(session: &str, request: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(session.as_bytes());
    hasher.write(request.as_bytes());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_read_back_as_stored() {
        for destination in
            [Destination::Session("0193-abc".into()), Destination::Channel(Id::new(42)), Destination::Webhook]
        {
            assert_eq!(Destination::parse(&destination.to_string()), Some(destination));
        }
        assert_eq!(Destination::Channel(Id::new(42)).to_string(), "channel:42");
        assert_eq!(Destination::parse("channel:0"), None);
        assert_eq!(Destination::parse("thread:1"), None);
    }

    #[test]
    fn a_notification_is_routed_by_mode_and_request() {
        let home = Some(Id::new(7));
        let project = || Some(Id::new(9));
        assert_eq!(route(None, home, true, "s", project), Ok(Destination::Session("s".into())));
        assert_eq!(route(None, home, false, "s", project), Ok(Destination::Channel(Id::new(9))));
        assert_eq!(route(None, home, false, "s", || None), Ok(Destination::Channel(Id::new(7))));
        assert_eq!(route(Some("5"), home, true, "s", project), Ok(Destination::Channel(Id::new(5))));
        assert_eq!(route(Some("#general"), home, true, "s", project), Err(RouteError::NotAChannelId));
        assert_eq!(route(None, None, true, "s", project), Ok(Destination::Webhook));
        assert_eq!(route(Some("5"), None, true, "s", project), Err(RouteError::WebhookOnly));
    }
}
