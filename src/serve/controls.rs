//! The run card's buttons: Stop while a run goes, Retry and Continue once it
//! ended. The reporter puts them on the card; this module keeps, per session,
//! the record of the latest card (in the state database, so it survives a
//! restart) and answers clicks against it: allowed people only, the latest
//! card only, each card's buttons once.

use omp_discord_core::controls::{self, CardRecord, Click, Control, Refusal};
use omp_discord_core::embed::{MessagePayload, clean, limits};
use omp_discord_core::inbound::prepare_inbound;
use omp_discord_core::protocol::{ServerFrame, SessionAction};
use serde_json::Value;
use twilight_model::application::interaction::{Interaction, InteractionData};
use twilight_model::http::interaction::InteractionResponse;
use twilight_model::user::User;

use super::inbound::inbound_frame;
use super::interaction::{private, update_components};
use super::{Sidecar, now_ms};
use crate::store::{Inbound, OutboxError};

/// Where a session's card record is kept in the state database's meta table.
fn record_key(session_key: &str) -> String {
    format!("controls:{session_key}")
}

/// Journals an edit that takes the buttons off card `card` of `session_id`,
/// from the last version of it the journal holds (none once pruned: nothing to do).
fn strip_card(outbox: &mut crate::store::Outbox, session_id: &str, card: u64) -> Result<(), OutboxError> {
    let key = format!("card:{session_id}:{card}");
    let Some((destination, body)) = outbox.latest_keyed_payload(&key)? else { return Ok(()) };
    let Ok(mut payload) = serde_json::from_str::<MessagePayload>(&body) else { return Ok(()) };
    controls::strip(&mut payload);
    let request = format!("strip-{key}");
    let nonce = super::intake::fresh_nonce(session_id, &request).to_string();
    let body = serde_json::to_string(&payload).expect("payloads serialize");
    let seq = outbox.enqueue(&destination, session_id, &request, &body, &nonce, now_ms())?;
    outbox.set_key(seq, Some(&key), true)
}

impl Sidecar {
    /// A message is being journaled: when it is a run card, keep the
    /// session's record and make the card's buttons say what the record says.
    /// Without a bot (the webhook mode) nobody could click them: they go.
    pub(super) fn observe_card(&self, session_id: &str, key: Option<&str>, edit: bool, payload: &mut MessagePayload) {
        if self.discord.is_none() {
            controls::strip(payload);
            return;
        }
        let Some((card_session, card)) = key.and_then(controls::parse_card_key) else { return };
        if card_session != session_id {
            controls::strip(payload);
            return;
        }
        let meta = record_key(&controls::session_key(session_id));
        let kept = self.with_outbox(|o| {
            let previous = read_record(o.meta(&meta)?.as_deref(), session_id);
            // A card from another process of this session (`omp --continue`)
            // still shows its buttons: that process is gone and cannot take
            // them off as it would before its next run, so they go here.
            let orphaned = previous.as_ref().filter(|p| !edit && p.card != card && p.state.is_some()).map(|p| p.card);
            let record = CardRecord::observe(previous, session_id, card, !edit, payload);
            if let Some(old) = orphaned {
                strip_card(o, session_id, old)?;
            }
            o.set_meta(&meta, &serde_json::to_string(&record).expect("records serialize"))
        });
        if let Err(err) = kept {
            tracing::error!(error = %err, "cannot record a run card");
        }
    }

    /// Answers a click on a run card's button or a Continue modal's submit.
    /// Returns false when the interaction is not one of those.
    pub(super) async fn on_run_control(&self, interaction: &Interaction) -> bool {
        let (custom_id, submitted) = match &interaction.data {
            Some(InteractionData::MessageComponent(data)) => (data.custom_id.as_str(), None),
            Some(InteractionData::ModalSubmit(data)) => {
                (data.custom_id.as_str(), Some(serde_json::to_value(data).unwrap_or_default()))
            }
            _ => return false,
        };
        let Some(click) = controls::parse_custom_id(custom_id) else { return false };
        let (Some(_), Some(user)) = (&self.discord, interaction.author()) else { return true };
        let roles = interaction.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default();
        let response = if self.access.is_allowed(user.id, roles) {
            self.run_control(interaction, user, click, submitted.as_ref()).await
        } else {
            tracing::info!(audit = true, user_id = %user.id, ?click, "run button refused: not on the allowlist");
            private("Only people on this bot's allowlist can use the run buttons.")
        };
        self.respond(interaction, &response, "run button").await;
        true
    }

    async fn run_control(
        &self,
        interaction: &Interaction,
        user: &User,
        click: Click,
        submitted: Option<&Value>,
    ) -> InteractionResponse {
        let who = user.global_name.clone().unwrap_or_else(|| user.name.clone());
        let (card, key) = match &click {
            Click::Button { card, key, .. } | Click::Prompt { card, key } => (*card, key.clone()),
        };
        let meta = record_key(&key);
        let Some(record) = self.with_outbox(|o| o.meta(&meta)).ok().flatten().and_then(|raw| read_any(&raw)) else {
            return private(Refusal::Stale.message());
        };
        let project = self.project_of(&record.session_id);
        let control = match click {
            Click::Prompt { .. } => {
                let text = submitted.and_then(controls::submitted_prompt).unwrap_or_default();
                return self.continue_with(interaction, user, &record, card, &text).await;
            }
            Click::Button { control, .. } => control,
        };
        if let Err(refusal) = record.check(control, card) {
            return private(refusal.message());
        }
        if control == Control::Continue {
            // Nothing is used yet: the person may still cancel the modal.
            return controls::continue_modal(card, &key, &project);
        }
        let Some(tx) = self.inbound.attached.lock().expect("attached lock").get(&record.session_id).cloned() else {
            return private(match control {
                Control::Stop => "That session is not running, so there is nothing to stop.",
                _ => {
                    "That session is not running now, and only its own process knows the prompt to retry. \
                      Start it again (`omp --continue` in its project), or use Continue to send a prompt."
                }
            });
        };
        let note = controls::used_note(control, &who);
        let record = match self.use_card(&meta, control, card, &note) {
            Ok(Ok(record)) => record,
            Ok(Err(refusal)) => return private(refusal.message()),
            Err(err) => {
                tracing::error!(error = %err, "cannot record a run button");
                return private("The click could not be recorded; try again.");
            }
        };
        let action = if control == Control::Stop { SessionAction::Abort } else { SessionAction::Retry };
        if tx.send(ServerFrame::Control { session_id: record.session_id.clone(), action }).await.is_err() {
            let _ = self.unuse_card(&meta, card);
            return private("That session just went away; nothing was done.");
        }
        tracing::info!(audit = true, session_id = %record.session_id, card, user_id = %user.id, ?control, "run button used");
        update_components(vec![record.used_buttons(control, &note)])
    }

    /// The Continue modal was submitted: the text goes to the session like a
    /// reply in its thread (queued when the session is not running). The card's
    /// buttons are used up when it is still the latest one; a card that moved
    /// on meanwhile is left alone, but the prompt is not lost.
    async fn continue_with(
        &self,
        interaction: &Interaction,
        user: &User,
        record: &CardRecord,
        card: u64,
        text: &str,
    ) -> InteractionResponse {
        let who = user.global_name.clone().unwrap_or_else(|| user.name.clone());
        let project = self.project_of(&record.session_id);
        let prepared = match prepare_inbound(&who, text) {
            Ok(prepared) => prepared,
            Err(refusal) => return private(&format!("Not sent: {refusal}")),
        };
        let session_id = record.session_id.clone();
        let inbound = Inbound {
            message_id: interaction.id.get(),
            session_id: session_id.clone(),
            author_id: user.id.to_string(),
            text: prepared,
            delivery: omp_discord_core::inbound::Delivery::FollowUp,
        };
        self.prompt_from_interaction(interaction.id.get());
        match self.with_outbox(|o| o.record_inbound(&inbound, now_ms())) {
            Ok(_) => {}
            Err(err) => return private(&format!("Not sent: the prompt could not be journaled ({err}).")),
        }
        tracing::info!(audit = true, %session_id, card, user_id = %user.id, "follow-up prompt from the Continue button");
        let tx = self.inbound.attached.lock().expect("attached lock").get(&session_id).cloned();
        let running = match tx {
            Some(tx) => tx.send(inbound_frame(inbound)).await.is_ok(),
            None => false,
        };
        let note = if running {
            String::new()
        } else {
            format!(
                "\n*The session is not running now; it gets this when it comes back (`omp --continue` in {project}).*"
            )
        };
        // The prompt stays readable in the thread, whatever happens to the card.
        let echo = omp_discord_core::embed::MessagePayload {
            content: Some(clean(&format!("📨 **{who}** continued: {text}{note}"), limits::CONTENT)),
            ..Default::default()
        };
        if let Err(err) = self.journal_for_session(&session_id, &format!("continue:{}", interaction.id), false, &echo) {
            tracing::warn!(error = %err, "cannot post a follow-up prompt's echo");
        }
        let meta = record_key(&controls::session_key(&session_id));
        let used_note = controls::used_note(Control::Continue, &who);
        match self.use_card(&meta, Control::Continue, card, &used_note) {
            Ok(Ok(record)) if interaction.message.is_some() => {
                update_components(vec![record.used_buttons(Control::Continue, &used_note)])
            }
            _ => private("Sent."),
        }
    }

    /// Marks card `card`'s buttons used (with `note`), if the click still counts.
    fn use_card(
        &self,
        meta: &str,
        control: Control,
        card: u64,
        note: &str,
    ) -> Result<Result<CardRecord, Refusal>, OutboxError> {
        self.with_outbox(|o| {
            let Some(mut record) = o.meta(meta)?.as_deref().and_then(read_any) else { return Ok(Err(Refusal::Stale)) };
            if let Err(refusal) = record.check(control, card) {
                return Ok(Err(refusal));
            }
            record.used = Some((control, note.to_owned()));
            o.set_meta(meta, &serde_json::to_string(&record).expect("records serialize"))?;
            Ok(Ok(record))
        })
    }

    /// Undoes [`Sidecar::use_card`] when the session could not be told.
    fn unuse_card(&self, meta: &str, card: u64) -> Result<(), OutboxError> {
        self.with_outbox(|o| {
            let Some(mut record) = o.meta(meta)?.as_deref().and_then(read_any) else { return Ok(()) };
            if record.card == card {
                record.used = None;
                o.set_meta(meta, &serde_json::to_string(&record).expect("records serialize"))?;
            }
            Ok(())
        })
    }
}

fn read_any(raw: &str) -> Option<CardRecord> {
    serde_json::from_str(raw).ok()
}

/// The stored record, if it is this session's (a hashed key could collide).
fn read_record(raw: Option<&str>, session_id: &str) -> Option<CardRecord> {
    raw.and_then(read_any).filter(|record| record.session_id == session_id)
}
