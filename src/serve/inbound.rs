//! What a reply in a session's thread asks for before it is journaled for
//! the session: the stop command aborts the run at once, a prefix makes it a
//! steer, and each author's rate is checked (over it, the reply is not
//! passed on, and the author is told once). A reply to a session that is not
//! connected waits for it, and the thread is told so.

use omp_discord_core::embed::MessagePayload;
use omp_discord_core::format::project_name;
use omp_discord_core::inbound::{
    Admission, Delivery, Directive, parse_directive, rate_limited_note, session_away_note,
};
use omp_discord_core::protocol::{ServerFrame, SessionAction};
use twilight_model::channel::Message;
use twilight_model::id::Id;
use twilight_model::id::marker::MessageMarker;

use super::{Sidecar, now_ms};
use crate::store::Inbound;

/// Discord's epoch (2015-01-01) in Unix milliseconds: snowflakes count from it.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// A stop command older than this (read when catching up after a gap) no
/// longer stops anything: the run it meant is over.
const STALE_STOP_MS: u64 = 2 * 60 * 1000;

/// After a start, shims get this long to reconnect before a reply counts as
/// reaching a session that is away.
const AWAY_NOTE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// At most one "not connected" note per session in this long.
const AWAY_NOTE_EVERY_MS: i64 = 10 * 60 * 1000;

/// When a message was written, from its id.
fn written_ms(id: Id<MessageMarker>) -> u64 {
    (id.get() >> 22) + DISCORD_EPOCH_MS
}

impl Sidecar {
    /// Screens an allowed person's reply in `session_id`'s thread. Returns how
    /// to deliver it and its text (without a steer prefix), or `None` when it
    /// was handled here (a stop, or over the author's rate) and journaled as
    /// taken, so catching up later does not deliver it either.
    pub(super) async fn screen_reply<'m>(&self, session_id: &str, message: &'m Message) -> Option<(Delivery, &'m str)> {
        let (delivery, text) = match parse_directive(&message.content, &self.config.directives) {
            Directive::Abort => {
                self.stop_from_reply(session_id, message).await;
                return None;
            }
            Directive::Deliver { delivery, text } => (delivery, text),
        };
        let Some(limiter) = &self.limiter else { return Some((delivery, text)) };
        let admission =
            limiter.lock().expect("limiter lock").admit(&message.author.id.to_string(), written_ms(message.id));
        let Admission::Refuse { tell, retry_after_ms } = admission else { return Some((delivery, text)) };
        tracing::info!(
            audit = true, session_id, user_id = %message.author.id, message_id = %message.id,
            "reply refused: the author is over the inbound rate limit"
        );
        self.take_without_delivery(session_id, message, "[not passed on: over the rate limit]");
        if tell {
            let limit = limiter.lock().expect("limiter lock").limit();
            let note = MessagePayload { content: Some(rate_limited_note(limit, retry_after_ms)), ..Default::default() };
            let key = format!("rate-limited:{}", message.id);
            if let Err(err) = self.journal_for_session(session_id, &key, false, &note) {
                tracing::error!(error = %err, "cannot journal the rate-limit note");
            }
        }
        None
    }

    /// A reply reached a session that is not connected: say so in its thread
    /// (at most once per [`AWAY_NOTE_EVERY_MS`] per session, and not in the
    /// first moments after a start, while shims reconnect).
    pub(super) fn note_session_away(&self, session_id: &str, message_id: Id<MessageMarker>) {
        if self.started.elapsed() < AWAY_NOTE_GRACE {
            return;
        }
        let key = format!("away-noted:{session_id}");
        let now = now_ms();
        let last: i64 = self.with_outbox(|o| o.meta(&key)).ok().flatten().and_then(|v| v.parse().ok()).unwrap_or(0);
        if now - last < AWAY_NOTE_EVERY_MS {
            return;
        }
        let Ok(Some(session)) = self.with_outbox(|o| o.session(session_id)) else { return };
        let cwd = session.cwd.unwrap_or_default();
        let askable = omp_discord_core::projects::Project::find(&self.config.projects, &cwd).is_some();
        let text = session_away_note(&project_name(&cwd), &session.host, askable);
        let note = MessagePayload { content: Some(text), ..Default::default() };
        if let Err(err) = self
            .with_outbox(|o| o.set_meta(&key, &now.to_string()))
            .and_then(|()| self.journal_for_session(session_id, &format!("away:{message_id}"), false, &note))
        {
            tracing::error!(error = %err, "cannot journal the note that the session is away");
        }
    }

    /// `!stop` (or the configured command): the session's current run is
    /// aborted; the reply gets ⏹️, or a note when nothing runs.
    async fn stop_from_reply(&self, session_id: &str, message: &Message) {
        self.take_without_delivery(session_id, message, "[stop the current run]");
        if now_ms().max(0).unsigned_abs().saturating_sub(written_ms(message.id)) > STALE_STOP_MS {
            tracing::info!(session_id, message_id = %message.id, "a stop command read late is ignored");
            return;
        }
        let tx = self.attached.lock().expect("attached lock").get(session_id).cloned();
        let control = ServerFrame::Control { session_id: session_id.to_owned(), action: SessionAction::Abort };
        let stopped = match tx {
            Some(tx) => tx.send(control).await.is_ok(),
            None => false,
        };
        tracing::info!(audit = true, session_id, user_id = %message.author.id, stopped, "stop requested from a reply");
        let Some(discord) = &self.discord else { return };
        if stopped {
            if let Err(err) = discord.react(message.channel_id, message.id, "⏹️").await {
                tracing::debug!(error = %err, "could not react to a stop");
            }
        } else {
            let note = MessagePayload {
                content: Some("That session is not running now, so there is no run to stop.".to_owned()),
                ..Default::default()
            };
            let _ = self.journal_for_session(session_id, &format!("stop:{}", message.id), false, &note);
        }
    }

    /// Journals a reply as already taken (never handed to OMP).
    fn take_without_delivery(&self, session_id: &str, message: &Message, text: &str) {
        let taken = Inbound {
            message_id: message.id.get(),
            session_id: session_id.to_owned(),
            author_id: message.author.id.to_string(),
            text: text.to_owned(),
            delivery: Delivery::FollowUp,
        };
        let journaled = self.with_outbox(|o| {
            o.record_inbound(&taken, now_ms())?;
            o.ack_inbound(taken.message_id, now_ms())
        });
        if let Err(err) = journaled {
            tracing::error!(error = %err, "cannot journal a reply");
        }
    }
}
