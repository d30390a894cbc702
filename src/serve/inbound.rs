//! What a reply in a session's thread asks for before it is journaled for
//! the session: the stop command aborts the run at once, a prefix makes it a
//! steer, and each author's rate is checked (over it, the reply is not
//! passed on, and the author is told once). A reply to a session that is not
//! connected waits for it, and the thread is told so.

use super::intake::record_session;
use super::{Sidecar, now_ms, parse_id};
use crate::store::{Inbound, OutboxError};
use omp_discord_core::embed::MessagePayload;
use omp_discord_core::format::project_name;
use omp_discord_core::inbound::prepare_inbound;
use omp_discord_core::inbound::{
    Admission, Delivery, Directive, parse_directive, rate_limited_note, session_away_note,
};
use omp_discord_core::inbound::{InboundLimiter, RateLimit};
use omp_discord_core::protocol::ServerFrame;
use omp_discord_core::protocol::SessionAction;
use omp_discord_core::protocol::SessionRef;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as SyncMutex};
use tokio::sync::mpsc;
use twilight_model::channel::Message;
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;
use twilight_model::id::marker::MessageMarker;

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

/// When a message (or an interaction) was made, from its snowflake id.
pub(super) fn written_ms<T>(id: Id<T>) -> u64 {
    (id.get() >> 22) + DISCORD_EPOCH_MS
}

/// Sessions seen within this window are caught up on after a gateway gap.
const BACKFILL_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
/// At most this many sessions are caught up on.
const BACKFILL_SESSIONS: usize = 50;

/// Where replies go, and what limits them.
#[derive(Debug)]
pub(super) struct Replies {
    /// The connection serving each attached session.
    pub(super) attached: SyncMutex<HashMap<String, mpsc::Sender<ServerFrame>>>,
    /// Prompts that came from an interaction (the Continue modal, `/omp ask`),
    /// not a message: nothing to put a ✅ on.
    pub(super) interaction_prompts: SyncMutex<HashSet<u64>>,
    /// Each author's reply rate, when limited.
    pub(super) limiter: Option<SyncMutex<InboundLimiter>>,
}

impl Replies {
    pub(super) fn new(rate_limit: Option<RateLimit>) -> Self {
        Self {
            attached: SyncMutex::new(HashMap::new()),
            interaction_prompts: SyncMutex::new(HashSet::new()),
            limiter: rate_limit.map(|limit| SyncMutex::new(InboundLimiter::new(limit))),
        }
    }
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
        let Some(limiter) = &self.inbound.limiter else { return Some((delivery, text)) };
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
        if self.counters.started.elapsed() < AWAY_NOTE_GRACE {
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
        let tx = self.inbound.attached.lock().expect("attached lock").get(session_id).cloned();
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

impl Sidecar {
    /// Registers `tx` as the connection of `session` and sends it the replies
    /// it has not acknowledged yet.
    pub(super) async fn attach(
        &self,
        session: &SessionRef,
        host: &str,
        tx: &mpsc::Sender<ServerFrame>,
    ) -> Result<(), OutboxError> {
        let pending = self.with_outbox(|o| {
            record_session(o, session, host, now_ms())?;
            o.pending_inbound(&session.id)
        })?;
        self.inbound.attached.lock().expect("attached lock").insert(session.id.clone(), tx.clone());
        for inbound in pending {
            let _ = tx.send(inbound_frame(inbound)).await;
        }
        // A session that attaches after the gateway closed for good hears it too.
        if let Some(text) = self.gateway_closed_notice() {
            let _ = tx.send(ServerFrame::Notice { session_id: session.id.clone(), text }).await;
        }
        Ok(())
    }

    /// A message from the gateway: if it is an allowed person's reply in a
    /// session's thread, journal it (once) and pass it to the session.
    pub async fn on_discord_message(&self, message: &Message) {
        if message.author.bot {
            return;
        }
        let thread = message.channel_id.to_string();
        let Ok(Some(session_id)) = self.with_outbox(|o| o.session_by_thread(&thread)) else { return };
        let roles = message.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default();
        if !self.access.is_allowed(message.author.id, roles) {
            tracing::info!(
                audit = true, session_id, user_id = %message.author.id, message_id = %message.id,
                "reply refused: the author is not on the allowlist"
            );
            return;
        }
        // Seen live and again when catching up: only the first counts.
        if self.with_outbox(|o| o.inbound_known(message.id.get())).unwrap_or(false) {
            return;
        }
        let name = message.author.global_name.clone().unwrap_or_else(|| message.author.name.clone());
        if self.answer_from_thread(&session_id, message.author.id, &name, &message.content) {
            // Journaled as taken, so catching up later does not hand it to OMP as a reply.
            let answer = Inbound {
                message_id: message.id.get(),
                session_id: session_id.clone(),
                author_id: message.author.id.to_string(),
                text: "[an answer to the agent's question]".into(),
                delivery: omp_discord_core::inbound::Delivery::FollowUp,
            };
            let _ = self.with_outbox(|o| {
                o.record_inbound(&answer, now_ms())?;
                o.ack_inbound(answer.message_id, now_ms())
            });
            if let Some(discord) = &self.discord
                && let Err(err) = discord.react(message.channel_id, message.id, "✅").await
            {
                tracing::debug!(error = %err, "could not react to an answer");
            }
            return;
        }
        let Some((delivery, content)) = self.screen_reply(&session_id, message).await else { return };
        let text = match prepare_inbound(&message.author.name, content) {
            Ok(text) => text,
            Err(refusal) => {
                tracing::info!(audit = true, session_id, message_id = %message.id, reason = %refusal, "reply refused");
                return;
            }
        };
        let inbound = Inbound {
            message_id: message.id.get(),
            session_id: session_id.clone(),
            author_id: message.author.id.to_string(),
            text,
            delivery,
        };
        match self.with_outbox(|o| o.record_inbound(&inbound, now_ms())) {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::error!(error = %err, "cannot journal a reply");
                return;
            }
        }
        tracing::info!(audit = true, session_id, user_id = %message.author.id, message_id = %message.id, "reply accepted");
        let tx = self.inbound.attached.lock().expect("attached lock").get(&session_id).cloned();
        match tx {
            Some(tx) => {
                let _ = tx.send(inbound_frame(inbound)).await;
            }
            None => self.note_session_away(&session_id, message.id),
        }
    }

    /// Catches up on replies the gateway could not replay (after a gap it
    /// could not resume, or a sidecar restart): reads each recent session's
    /// thread from the newest message already taken, oldest first, through
    /// the same path as live messages (which skips those already journaled).
    pub async fn backfill(&self) {
        let Some(discord) = &self.discord else { return };
        let since = now_ms() - BACKFILL_WINDOW_MS;
        let cursors = match self.with_outbox(|o| o.backfill_cursors(since, BACKFILL_SESSIONS)) {
            Ok(cursors) => cursors,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the sessions to catch up on");
                return;
            }
        };
        let mut seen = 0usize;
        for (thread, after) in cursors {
            let (Some(thread), Some(mut after)) = (Id::new_checked(thread), Id::new_checked(after)) else { continue };
            loop {
                let page = match discord.channel_messages_after(thread, after, 100).await {
                    Ok(page) => page,
                    Err(err) => {
                        tracing::warn!(thread_id = %thread, error = %err, "cannot catch up on a thread");
                        break;
                    }
                };
                for message in &page {
                    self.on_discord_message(message).await;
                    after = message.id;
                }
                seen += page.len();
                if page.len() < 100 {
                    break;
                }
            }
        }
        tracing::info!(messages = seen, "caught up on session threads");
    }

    /// The session's shim handed a reply to OMP: never send it again, and
    /// show the bot typing in its thread while the agent works. Returns the
    /// reply's thread and id, to show the author it arrived.
    pub(super) fn ack_inbound(self: &Arc<Self>, message_id: &str) -> Option<(Id<ChannelMarker>, Id<MessageMarker>)> {
        let id = parse_id::<MessageMarker>(message_id)?;
        if let Err(err) = self.with_outbox(|o| o.ack_inbound(id.get(), now_ms())) {
            tracing::error!(error = %err, "cannot record a reply's delivery");
            return None;
        }
        let (session_id, thread) = self.with_outbox(|o| o.inbound_session(id.get())).ok().flatten()?;
        let thread = parse_id(&thread?)?;
        // Started here, in frame order, so the run's last report (a later frame) stops it.
        self.start_typing(&session_id, thread);
        // A prompt from an interaction has no message to react to; the card's
        // "Continued by" or the command's answer already says it was taken.
        let from_interaction = self.inbound.interaction_prompts.lock().expect("prompts lock").remove(&id.get());
        (!from_interaction).then_some((thread, id))
    }

    /// Remembers that the prompt journaled under `interaction` came from an interaction.
    pub(super) fn prompt_from_interaction(&self, interaction: u64) {
        self.inbound.interaction_prompts.lock().expect("prompts lock").insert(interaction);
    }

    /// The bot's ✅ on a reply that reached OMP.
    pub(super) async fn show_received(&self, thread: Id<ChannelMarker>, id: Id<MessageMarker>) {
        if let Some(discord) = &self.discord
            && let Err(err) = discord.react(thread, id, "✅").await
        {
            tracing::debug!(error = %err, "could not react to a reply");
        }
    }
}

pub(super) fn inbound_frame(inbound: Inbound) -> ServerFrame {
    ServerFrame::Inbound {
        session_id: inbound.session_id,
        message_id: inbound.message_id.to_string(),
        author_id: inbound.author_id,
        text: inbound.text,
        deliver_as: inbound.delivery,
    }
}
