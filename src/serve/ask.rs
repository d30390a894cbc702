//! `discord_ask`: a question in the session's thread, answered by an allowed
//! person's button click or reply, or expired at its deadline.

use super::intake::record_session;
use super::interaction::{private, update_message};
use super::read::MAX_READ_CHARS;
use super::{Sidecar, now_ms};
use crate::store::Ask;
use omp_discord_core::ask::AskState;
use omp_discord_core::ask::{question_message, settled_message};
use omp_discord_core::format::project_name;
use omp_discord_core::protocol::ServerFrame;
use omp_discord_core::protocol::SessionRef;
use omp_discord_core::redact::redact_text;
use std::collections::HashMap;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;
use tokio::sync::oneshot;
use twilight_model::application::interaction::Interaction;
use twilight_model::id::Id;
use twilight_model::id::marker::UserMarker;

/// The outcome of a question: answered (the answer, who) or not (why).
pub(super) type AskOutcome = (bool, String, Option<String>);

/// Questions waiting for an answer.
#[derive(Debug, Default)]
pub(super) struct Asks {
    /// Callers waiting, by ask id.
    pub(super) waiters: SyncMutex<HashMap<i64, Vec<oneshot::Sender<AskOutcome>>>>,
}

impl Sidecar {
    /// `discord_ask`: posts the question in the session's thread (once per
    /// call, even when asked again after a reconnect) and waits for the
    /// first answer from an allowed person, or the deadline.
    pub(super) async fn ask(
        &self,
        id: String,
        session: SessionRef,
        ask_id: String,
        question: String,
        options: Vec<String>,
        timeout_secs: u64,
    ) -> ServerFrame {
        let answer = |answered: bool, text: String, by: Option<String>| ServerFrame::Answer {
            id: id.clone(),
            answered,
            text,
            by,
        };
        if self.discord.is_none() || self.config.home_channel.is_none() {
            return answer(
                false,
                "no one can answer: omp-discord serve has no Discord token or home channel".into(),
                None,
            );
        }
        // Stored redacted, as they are shown: no secret rests in the state database.
        let question = redact_text(&question).into_owned();
        let options: Vec<String> = options.iter().map(|option| redact_text(option).into_owned()).collect();
        let now = now_ms();
        let deadline = now.saturating_add(i64::try_from(timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
        let created = self.with_outbox(|o| {
            record_session(o, &session, "", now)?;
            o.ask_for(&session.id, &ask_id, &question, &options, now, deadline)
        });
        let (ask, new) = match created {
            Ok(created) => created,
            Err(err) => return answer(false, format!("the question could not be recorded ({err})"), None),
        };
        let (tx, rx) = oneshot::channel();
        self.asks.waiters.lock().expect("ask waiters lock").entry(ask.ask_id).or_default().push(tx);
        // Answered while we registered (or before a reconnect): answer from the record.
        if let Ok(Some(current)) = self.with_outbox(|o| o.ask(ask.ask_id))
            && current.state != AskState::Pending
        {
            return answer(current.state == AskState::Answered, outcome_text(&current), current.answered_by);
        }
        let project = project_name(session.cwd.as_deref().unwrap_or_default());
        if new {
            let message = question_message(ask.ask_id, &question, &options, &project);
            if let Err(err) = self.journal_for_session(&session.id, &ask_key(ask.ask_id), false, &message) {
                return answer(false, format!("the question could not be sent ({err})"), None);
            }
            tracing::info!(audit = true, ask_id = ask.ask_id, session_id = %session.id, "question asked");
        }
        let wait = Duration::from_millis(u64::try_from(ask.deadline_ms.saturating_sub(now_ms())).unwrap_or(0));
        tokio::select! {
            outcome = rx => match outcome {
                Ok((answered, text, by)) => answer(answered, text, by),
                Err(_) => answer(false, "the sidecar stopped before anyone answered".into(), None),
            },
            () = tokio::time::sleep(wait) => {
                let text = format!("no one answered within {timeout_secs} s");
                self.settle_ask(&ask, AskState::Expired, None, None, &format!("Unanswered after {timeout_secs} s"), &project);
                match self.with_outbox(|o| o.ask(ask.ask_id)) {
                    Ok(Some(current)) if current.state == AskState::Answered => {
                        answer(true, outcome_text(&current), current.answered_by)
                    }
                    _ => answer(false, text, None),
                }
            }
            () = self.shutdown.cancelled() => answer(false, "the sidecar is stopping".into(), None),
        }
    }

    /// Records the first outcome of a question, replaces the question with
    /// its outcome in the thread, and wakes whoever waits. False when it was
    /// settled already.
    pub(super) fn settle_ask(
        &self,
        ask: &Ask,
        state: AskState,
        answer: Option<&str>,
        by: Option<&str>,
        headline: &str,
        project: &str,
    ) -> bool {
        match self.with_outbox(|o| o.settle_ask(ask.ask_id, state, answer, by, now_ms())) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(err) => {
                tracing::error!(error = %err, "cannot record an answer");
                return false;
            }
        }
        tracing::info!(audit = true, ask_id = ask.ask_id, state = state.as_str(), by, "question settled");
        let answered = state == AskState::Answered;
        let message = settled_message(&ask.question, headline, answered, project);
        let _ = self.journal_for_session(&ask.session_id, &ask_key(ask.ask_id), true, &message);
        let text = match answer {
            Some(answer) => answer.to_owned(),
            None => headline.to_lowercase(),
        };
        let waiters = self.asks.waiters.lock().expect("ask waiters lock").remove(&ask.ask_id).unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send((answered, text.clone(), by.map(str::to_owned)));
        }
        true
    }

    /// A reply in a session's thread that answers its open free-text
    /// question; false when no question is open (the reply is for OMP then).
    pub(super) fn answer_from_thread(&self, session_id: &str, author: Id<UserMarker>, name: &str, text: &str) -> bool {
        let Ok(Some(ask)) = self.with_outbox(|o| o.open_free_text_ask(session_id, now_ms())) else { return false };
        let project = self.project_of(session_id);
        let text: String = redact_text(text.trim()).chars().take(MAX_READ_CHARS).collect();
        tracing::debug!(user_id = %author, ask_id = ask.ask_id, "reply answers a question");
        self.settle_ask(
            &ask,
            AskState::Answered,
            Some(&text),
            Some(name),
            &format!("Answered by {name}: {text}"),
            &project,
        )
    }

    /// A click on one of a question's answer buttons.
    pub(super) async fn on_answer_click(&self, interaction: &Interaction, ask_id: i64, option: usize) {
        let (Some(_), Some(user)) = (&self.discord, interaction.author()) else { return };
        let roles = interaction.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default();
        let ask = self.with_outbox(|o| o.ask(ask_id)).ok().flatten();
        let response = match ask {
            _ if !self.access.is_allowed(user.id, roles) => {
                tracing::info!(audit = true, ask_id, user_id = %user.id, "answer refused: not on the allowlist");
                private("Only people on this bot's allowlist can answer the agent.")
            }
            Some(ask) if ask.state == AskState::Pending && ask.deadline_ms <= now_ms() => {
                // Past its deadline (the sidecar was away when it passed): the click answers nothing.
                tracing::info!(audit = true, ask_id, user_id = %user.id, "answer refused: expired");
                let project = self.project_of(&ask.session_id);
                self.settle_ask(&ask, AskState::Expired, None, None, "Unanswered in time", &project);
                private("This question expired before anyone answered; the agent went on without an answer.")
            }
            Some(ask) if ask.state == AskState::Pending && option < ask.options.len() => {
                let who = user.global_name.clone().unwrap_or_else(|| user.name.clone());
                let choice = ask.options[option].clone();
                let project = self.project_of(&ask.session_id);
                let headline = format!("Answered by {who}: {choice}");
                if self.settle_ask(&ask, AskState::Answered, Some(&choice), Some(&who), &headline, &project) {
                    // The journaled edit replaces the message too; this answer just closes the click.
                    update_message(&settled_message(&ask.question, &headline, true, &project))
                } else {
                    private("This question was already answered or has expired.")
                }
            }
            _ => private("This question was already answered or has expired."),
        };
        self.respond(interaction, &response, "answer click").await;
    }
}

/// The outbox key of a question's message (edited once settled).
fn ask_key(ask_id: i64) -> String {
    format!("ask:{ask_id}")
}

fn outcome_text(ask: &Ask) -> String {
    match (ask.state, &ask.answer) {
        (AskState::Answered, Some(answer)) => answer.clone(),
        _ => "no one answered in time".into(),
    }
}
