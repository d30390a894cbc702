//! Delivery: one worker per destination sends its journaled rows in order,
//! coalescing backlogs, editing keyed messages, resting on failures, and
//! tells each waiting client the outcome.

use super::hold::is_permission_refusal;
use super::intake::{Destination, fresh_nonce};
use super::{Sidecar, now_ms, parse_id};
use crate::discord::codes::{UNKNOWN_CHANNEL, UNKNOWN_MESSAGE};
use crate::discord::{Discord, SendError};
use crate::store::Pending;
use omp_discord_core::embed::{MessagePayload, coalesce, limits as embed_limits, posted_as};
use omp_discord_core::protocol::{ErrorCode, ServerFrame};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, oneshot};
use tokio_util::task::TaskTracker;
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;
use twilight_model::id::marker::MessageMarker;

/// How long a destination rests after Discord was unreachable, doubling up to the max.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);
/// How often the delivery loop looks for spool files left while no client connects.
const SPOOL_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long sends in flight may finish after shutdown was requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// The reporter's key of a session card (`session:<id>`): the thread's starter message.
const SESSION_CARD_PREFIX: &str = "session:";

/// The delivery loop's state.
#[derive(Debug, Default)]
pub(super) struct Delivery {
    /// Wakes the delivery loop when a row is journaled.
    pub(super) wake: Notify,
    /// Clients waiting for the outcome of a journaled row, by sequence number
    /// (more than one when a client sent it again under its idempotency key).
    pub(super) waiters: SyncMutex<HashMap<i64, Vec<oneshot::Sender<ServerFrame>>>>,
    /// Destinations whose merged message Discord refused: their next send is one row.
    pub(super) split_next: SyncMutex<HashSet<String>>,
    /// Destinations that have a delivery worker.
    pub(super) active: SyncMutex<HashSet<String>>,
}

impl Delivery {
    /// `waiter` hears the outcome of row `seq`.
    pub(super) fn wait_for(&self, seq: i64, waiter: oneshot::Sender<ServerFrame>) {
        let mut waiters = self.waiters.lock().expect("waiters lock");
        let waiting = waiters.entry(seq).or_default();
        // Clients that went away no longer listen.
        waiting.retain(|earlier| !earlier.is_closed());
        waiting.push(waiter);
    }
}

impl Sidecar {
    /// Tells every client waiting on row `seq` its outcome; the frame's
    /// request id is each client's own.
    pub(super) fn report(&self, seq: i64, frame: ServerFrame) {
        let waiters = self.delivery.waiters.lock().expect("waiters lock").remove(&seq).unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send(frame.clone());
        }
    }

    /// Sends the next message of one destination: a claimed batch again, or
    /// as many of its oldest rows as coalesce into one message. Returns
    /// whether the destination may go on (false: rest, then retry).
    pub(super) async fn deliver_next(&self, discord: &Discord, rows: Vec<Pending>) -> bool {
        let Some(head) = rows.first() else { return true };
        let destination = head.destination.clone();
        let mut payloads = Vec::with_capacity(rows.len());
        for row in &rows {
            match serde_json::from_str::<MessagePayload>(&row.payload) {
                Ok(payload) => payloads.push(payload),
                // Stop at a bad row: it is failed on its own once it reaches the head.
                Err(_) if !payloads.is_empty() => break,
                Err(err) => {
                    self.finish_failed(&rows[..1], &format!("unreadable journal row: {err}")).await;
                    return true;
                }
            }
        }
        let (message, taken) = match head.batch {
            // A claimed batch goes out exactly as claimed, whatever it contains.
            Some(_) => (coalesce_all(&payloads), payloads.len()),
            // A keyed message (the run card) is edited later: it never shares a message.
            None if head.key.is_some() => (payloads[0].clone(), 1),
            None => {
                let plain = rows.iter().take(payloads.len()).take_while(|r| r.key.is_none()).count();
                coalesce(&payloads[..plain]).expect("at least one payload")
            }
        };
        let batch = &rows[..taken];
        let seqs: Vec<i64> = batch.iter().map(|r| r.seq).collect();
        // Claimed again when resent (same leader): every send counts as an attempt.
        if let Err(err) = self.with_outbox(|o| o.claim(&seqs)) {
            tracing::error!(error = %err, "cannot update the outbox");
            return false;
        }
        let nonce = head.nonce.parse().unwrap_or_default();
        // The session card (key `session:…`) is the thread's starter message in the home channel.
        let session_card = head.key.as_deref().is_some_and(|key| key.starts_with(SESSION_CARD_PREFIX));
        let parsed = Destination::parse(&destination);
        let thread_of = match &parsed {
            Some(Destination::Session(session_id)) => Some(session_id.as_str()),
            _ => None,
        };
        let target = if let Some(session_id) = thread_of {
            match self.ensure_thread(discord, session_id, session_card.then_some(&message)).await {
                Ok((_, true)) => {
                    let starter = self.starter_of(discord, session_id).await.ok().flatten();
                    return self.finish_delivered(&destination, head, batch, &seqs, starter).await;
                }
                Ok((thread, false)) if session_card => {
                    // The thread exists already: the card replaces its starter.
                    match self.starter_of(discord, session_id).await {
                        Ok(Some((home, starter))) => match discord.update_message(home, starter, &message).await {
                            Ok(()) => {
                                return self
                                    .finish_delivered(&destination, head, batch, &seqs, Some((home, starter)))
                                    .await;
                            }
                            Err(err) => Err(err),
                        },
                        Ok(None) => Ok(thread),
                        Err(err) => Err(err),
                    }
                }
                Ok((thread, false)) => Ok(thread),
                Err(err) => Err(err),
            }
        } else if let Some(Destination::Channel(channel)) = parsed {
            Ok(channel)
        } else if parsed == Some(Destination::Webhook) {
            // The webhook posts to its own channel; Discord's answer says which.
            Ok(Id::new(u64::MAX))
        } else {
            self.finish_failed(batch, "unknown destination").await;
            return true;
        };
        crate::failpoint::hit("before_send");
        // A batch claimed before may have been posted already, and its nonce forgotten by Discord by now.
        let replay = head.batch.is_some() && head.key.is_none() && self.discord.is_some();
        let found = match &target {
            Ok(channel) if replay => self.earlier_posting(discord, *channel, &message).await,
            _ => None,
        };
        if let Some(at) = found {
            tracing::info!(%destination, message_id = %at.1, "found the message posted before; not posting it again");
            return self.finish_delivered(&destination, head, batch, &seqs, Some(at)).await;
        }
        let sent = match target {
            Ok(channel) => match self.post_or_edit(discord, head, channel, &message, nonce).await {
                Err(err) if err.code() == Some(UNKNOWN_CHANNEL) && thread_of.is_some() => {
                    // Someone deleted the session's thread: open a new one on the next attempt.
                    let session_id = thread_of.unwrap_or_default();
                    let nonce = fresh_nonce(session_id, "starter").to_string();
                    let _ = self.with_outbox(|o| o.reset_thread(session_id, &nonce));
                    tracing::warn!(session_id, "the session's thread is gone; opening a new one");
                    return false;
                }
                sent => sent,
            },
            Err(err) => Err(err),
        };
        match sent {
            Ok(at) => self.finish_delivered(&destination, head, batch, &seqs, Some(at)).await,
            Err(SendError::Rejected { status, code, message }) if is_permission_refusal(status, code) => {
                // Someone can fix this in Discord: the rows wait, the destination rests.
                let _ = self.with_outbox(|o| o.unclaim(seqs[0]));
                self.hold(&destination, code, &message).await;
                false
            }
            Err(SendError::Rejected { status, code, message }) if batch.len() > 1 => {
                // One row may have broken the merged message: retry each on its own.
                tracing::warn!(%destination, status, code, %message, "merged message refused; splitting the batch");
                let _ = self.with_outbox(|o| o.unclaim(seqs[0]));
                self.delivery.split_next.lock().expect("split lock").insert(destination);
                true
            }
            Err(err @ SendError::Rejected { .. }) => {
                tracing::warn!(%destination, error = %err, "discord refused a message");
                let ServerFrame::Error { code, message, .. } = super::read::error_frame(String::new(), &err) else {
                    unreachable!("error_frame builds an error")
                };
                self.finish_failed_with(batch, code, &message).await;
                true
            }
            Err(err) => {
                // Unreachable or unauthorized: keep the rows (and everything behind them) and rest.
                tracing::warn!(%destination, error = %err, "delivery postponed");
                *self.counters.last_error.lock().await = Some(err.to_string());
                let text = format!("{err}; the message stays queued and will be retried");
                // Every client waiting on this destination hears why, not only the
                // batch's: rows behind a claimed batch wait for it, however long.
                let waiting = self
                    .with_outbox(|o| o.pending_requests(&destination))
                    .unwrap_or_else(|_| batch.iter().map(|row| (row.seq, row.request_id.clone())).collect());
                for (seq, request_id) in waiting {
                    let frame = ServerFrame::Error {
                        id: Some(request_id),
                        code: ErrorCode::DiscordUnavailable,
                        message: text.clone(),
                    };
                    self.report(seq, frame);
                }
                false
            }
        }
    }

    /// Records a sent message (`at`: where it is) for every row of its batch,
    /// remembers its key, and tells the waiting clients.
    pub(super) async fn finish_delivered(
        &self,
        destination: &str,
        head: &Pending,
        batch: &[Pending],
        seqs: &[i64],
        at: Option<(Id<ChannelMarker>, Id<MessageMarker>)>,
    ) -> bool {
        let Some((channel, message_id)) = at else {
            tracing::error!(destination, "a delivered message has no recorded location");
            return false;
        };
        if let Some(key) = &head.key {
            let remembered =
                self.with_outbox(|o| o.remember_key(destination, key, &channel.to_string(), &message_id.to_string()));
            if let Err(err) = remembered {
                tracing::error!(error = %err, "cannot remember a keyed message");
            }
        }
        crate::failpoint::hit("after_send_before_mark");
        if let Err(err) =
            self.with_outbox(|o| o.mark_delivered(seqs, &channel.to_string(), &message_id.to_string(), now_ms()))
        {
            // Sent but not recorded: the resend reuses the nonce, so Discord will not post twice.
            tracing::error!(error = %err, "cannot record a delivery");
            return false;
        }
        self.counters.delivered.fetch_add(seqs.len() as u64, Ordering::SeqCst);
        self.release(destination);
        tracing::debug!(rows = seqs.len(), channel_id = %channel, message_id = %message_id, "message delivered");
        for row in batch {
            let frame = ServerFrame::Delivered {
                id: row.request_id.clone(),
                channel_id: channel.to_string(),
                message_id: message_id.to_string(),
            };
            self.report(row.seq, frame);
        }
        true
    }

    /// Posts `message`, or, for an edit, replaces the message posted under the
    /// row's key (posting anew when there is none or it was deleted).
    /// Returns where the message is.
    pub(super) async fn post_or_edit(
        &self,
        discord: &Discord,
        row: &Pending,
        channel: Id<ChannelMarker>,
        message: &MessagePayload,
        nonce: u64,
    ) -> Result<(Id<ChannelMarker>, Id<MessageMarker>), SendError> {
        let earlier = match (&row.key, row.edit) {
            (Some(key), true) => self.with_outbox(|o| o.keyed(&row.destination, key)).ok().flatten(),
            _ => None,
        };
        if let Some((earlier_channel, earlier_message)) = earlier
            && let (Some(earlier_channel), Some(earlier_message)) =
                (parse_id(&earlier_channel), parse_id(&earlier_message))
        {
            match discord.update_message(earlier_channel, earlier_message, message).await {
                Ok(()) => return Ok((earlier_channel, earlier_message)),
                Err(err) if err.code() == Some(UNKNOWN_MESSAGE) => {}
                Err(err) => return Err(err),
            }
        }
        discord.create_message(channel, message, nonce).await
    }

    /// The bot's message in `channel` (among its 50 newest) that is `message`
    /// but not in the journal: posted by an earlier attempt whose answer was
    /// lost (a crash, a timeout). Looked for before a claimed batch is sent
    /// again, because Discord forgets a nonce after a few minutes.
    async fn earlier_posting(
        &self,
        discord: &Discord,
        channel: Id<ChannelMarker>,
        message: &MessagePayload,
    ) -> Option<(Id<ChannelMarker>, Id<MessageMarker>)> {
        let recent = match discord.channel_messages(channel, 50, None).await {
            Ok(recent) => recent,
            Err(err) => {
                tracing::debug!(%channel, error = %err, "cannot look for an earlier posting; sending again");
                return None;
            }
        };
        let bot = *self.bot_user.lock().expect("bot user lock");
        recent
            .iter()
            .filter(|shown| shown.author.bot && bot.is_none_or(|bot| shown.author.id == bot))
            .filter(|shown| posted_as(message, &shown.content, &shown.embeds))
            .find(|shown| !self.with_outbox(|o| o.knows_message(&shown.id.to_string())).unwrap_or(true))
            .map(|shown| (channel, shown.id))
    }

    pub(super) async fn finish_failed(&self, rows: &[Pending], reason: &str) {
        self.finish_failed_with(rows, ErrorCode::DiscordRejected, reason).await;
    }

    pub(super) async fn finish_failed_with(&self, rows: &[Pending], code: ErrorCode, reason: &str) {
        let now = now_ms();
        for row in rows {
            let _ = self.with_outbox(|o| o.mark_failed(row.seq, code.as_str(), reason, now));
            self.counters.failed.fetch_add(1, Ordering::SeqCst);
            let frame = ServerFrame::Error { id: Some(row.request_id.clone()), code, message: reason.to_owned() };
            self.report(row.seq, frame);
        }
        *self.counters.last_error.lock().await = Some(reason.to_owned());
    }
}

/// All payloads of a claimed batch as one message (they were merged once already).
pub(super) fn coalesce_all(payloads: &[MessagePayload]) -> MessagePayload {
    let mut merged = payloads[0].clone();
    for next in &payloads[1..] {
        merged.embeds.extend(next.embeds.iter().cloned());
    }
    merged
}

/// The delivery loop: one worker per destination with pending rows, each
/// sending its queue in journal order. A destination that fails rests (with
/// backoff) without holding up the others. On shutdown, sends in flight get
/// a grace period to finish and be recorded.
pub async fn deliver(sidecar: Arc<Sidecar>) {
    if sidecar.client().is_none() {
        return;
    }
    let workers = TaskTracker::new();
    let mut last_prune = Instant::now() - Duration::from_secs(3600);
    let mut last_spool_check = Instant::now();
    loop {
        if last_prune.elapsed() > Duration::from_secs(600) {
            last_prune = Instant::now();
            match sidecar.with_outbox(|o| o.retain(now_ms())) {
                Ok(pruned) if pruned != crate::store::Pruned::default() => {
                    tracing::debug!(?pruned, "pruned the journal")
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "cannot prune the journal"),
            }
        }
        if last_spool_check.elapsed() > SPOOL_CHECK_EVERY {
            // A shim that could not connect in time spools its reports at exit,
            // possibly after the last client said hello: pick them up anyway.
            last_spool_check = Instant::now();
            sidecar.import_spool();
        }
        {
            // Under the same lock a worker takes to retire, so no destination is left without one.
            let mut active = sidecar.delivery.active.lock().expect("active lock");
            match sidecar.with_outbox(|o| o.pending_destinations()) {
                Ok(destinations) => {
                    for destination in destinations {
                        if active.insert(destination.clone()) {
                            workers.spawn(destination_worker(sidecar.clone(), destination));
                        }
                    }
                }
                Err(err) => tracing::error!(error = %err, "cannot read the outbox"),
            }
        }
        tokio::select! {
            () = sidecar.shutdown.cancelled() => break,
            () = sidecar.delivery.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    workers.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, workers.wait()).await.is_err() {
        tracing::warn!("sends still in flight at shutdown; they resume after a restart");
    }
    // Whoever still waits learns that the message stays queued for the next start.
    sidecar.delivery.waiters.lock().expect("waiters lock").clear();
}

pub(super) async fn destination_worker(sidecar: Arc<Sidecar>, destination: String) {
    let discord = sidecar.client().expect("workers run only with a Discord client");
    let mut pause = RETRY_PAUSE;
    loop {
        if sidecar.shutdown.is_cancelled() {
            break;
        }
        let mut rows = match sidecar.with_outbox(|o| o.next_rows(&destination, embed_limits::EMBEDS)) {
            Ok(rows) => rows,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the outbox");
                Vec::new()
            }
        };
        if rows.is_empty() {
            let mut active = sidecar.delivery.active.lock().expect("active lock");
            // Checked again under the lock: a row journaled meanwhile keeps this worker alive.
            if sidecar.with_outbox(|o| o.next_rows(&destination, 1)).map_or(true, |rows| rows.is_empty()) {
                active.remove(&destination);
                return;
            }
            continue;
        }
        // After a refused merge, the next attempt sends the head alone.
        if sidecar.delivery.split_next.lock().expect("split lock").remove(&destination) {
            rows.truncate(1);
        }
        if sidecar.deliver_next(discord, rows).await {
            pause = RETRY_PAUSE;
        } else if sidecar.is_held(&destination) {
            sidecar.rest_while_held(&destination).await;
        } else {
            tokio::select! {
                () = sidecar.shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }
    sidecar.delivery.active.lock().expect("active lock").remove(&destination);
}
