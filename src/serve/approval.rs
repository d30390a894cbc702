//! Approvals: a tool call that needs a person waits for an allowed click on
//! Approve / Always allow / Deny, or its deadline. `core::approval` decides
//! the texts and the policy; this module records, posts and waits.

use super::intake::record_session;
use super::interaction::{private, update_message};
use super::{Sidecar, now_ms};
use crate::store::Approval;
use omp_discord_core::approval::ApprovalState;
use omp_discord_core::approval::{ApprovalPolicy, Decision, approval_message, decided_message};
use omp_discord_core::format::project_name;
use omp_discord_core::protocol::SessionRef;
use omp_discord_core::protocol::{ErrorCode, ServerFrame};
use omp_discord_core::redact::redact_json;
use omp_discord_core::templates::ApprovalRequest;
use std::collections::HashMap;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;
use tokio::sync::oneshot;
use twilight_model::application::interaction::Interaction;

/// Which tool calls wait for a person, and the calls waiting now.
#[derive(Debug)]
pub(super) struct Approvals {
    pub(super) policy: ApprovalPolicy,
    /// Tool calls waiting for a decision, by approval id.
    pub(super) waiters: SyncMutex<HashMap<i64, Vec<ApprovalWaiter>>>,
}

impl Approvals {
    pub(super) fn new(policy: ApprovalPolicy) -> Self {
        Self { policy, waiters: SyncMutex::new(HashMap::new()) }
    }

    /// Tells every call waiting on `approval_id` the decision.
    pub(super) fn wake(&self, approval_id: i64, approved: bool, reason: String) {
        let waiters = self.waiters.lock().expect("approval waiters lock").remove(&approval_id).unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send((approved, reason.clone()));
        }
    }
}

impl Sidecar {
    /// A tool call that needs a person: posts the request with Approve / Deny
    /// buttons in the session's thread (once per call, even when asked again
    /// after a reconnect) and waits for the first allowed click or the deadline.
    pub(super) async fn approve(
        &self,
        id: String,
        session: SessionRef,
        tool_call_id: String,
        tool: String,
        input: serde_json::Value,
    ) -> ServerFrame {
        let answer = |approved: bool, reason: String| ServerFrame::Decision { id: id.clone(), approved, reason };
        if self.discord.is_none() || self.config.home_channel.is_none() {
            return answer(
                false,
                "no one can approve this call: omp-discord serve has no Discord token or home channel".into(),
            );
        }
        let now = now_ms();
        // Someone chose "Always allow" for this tool in this session.
        if let Ok(Some(by)) = self.with_outbox(|o| o.always_allowed(&session.id, &tool)) {
            tracing::info!(audit = true, session_id = %session.id, %tool, "approved: always allowed in this session");
            return answer(true, format!("{tool} is always allowed in this session (by {by} in Discord)"));
        }
        let timeout_ms = i64::try_from(self.approvals.policy.timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        // Stored and shown redacted: a secret in a command rests nowhere in clear.
        let input = redact_json(&input);
        let input_json = input.to_string();
        let created = self.with_outbox(|o| {
            record_session(o, &session, "", now)?;
            o.approval_for(&session.id, &tool_call_id, &tool, &input_json, now, now.saturating_add(timeout_ms))
        });
        let (approval, new) = match created {
            Ok(created) => created,
            Err(err) => {
                return answer(false, format!("the approval could not be recorded ({err}); the call was denied"));
            }
        };
        let (tx, rx) = oneshot::channel();
        self.approvals.waiters.lock().expect("approval waiters lock").entry(approval.approval_id).or_default().push(tx);
        // Decided while we registered (or before a reconnect): answer from the record.
        if let Ok(Some(current)) = self.with_outbox(|o| o.approval(approval.approval_id))
            && current.state != ApprovalState::Pending
        {
            return answer(current.state == ApprovalState::Approved, verdict_reason(&current));
        }
        let request = ApprovalRequest { tool: tool.clone(), input, reason: None };
        let project = project_name(session.cwd.as_deref().unwrap_or_default());
        if new {
            let message = approval_message(&approval.approval_id.to_string(), &request, &project);
            if let Err(err) =
                self.journal_for_session(&session.id, &approval_key(approval.approval_id), false, &message)
            {
                return answer(false, format!("the approval request could not be sent ({err}); the call was denied"));
            }
            tracing::info!(audit = true, approval_id = approval.approval_id, session_id = %session.id, %tool, "approval requested");
        }
        let wait = Duration::from_millis(u64::try_from(approval.deadline_ms.saturating_sub(now_ms())).unwrap_or(0));
        tokio::select! {
            decided = rx => match decided {
                Ok((approved, reason)) => answer(approved, reason),
                Err(_) => answer(false, "the sidecar stopped before anyone decided; the call was denied".into()),
            },
            () = tokio::time::sleep(wait) => {
                self.expire(&approval);
                match self.with_outbox(|o| o.approval(approval.approval_id)) {
                    Ok(Some(current)) => answer(current.state == ApprovalState::Approved, verdict_reason(&current)),
                    _ => answer(false, "the approval record is gone; the call was denied".into()),
                }
            }
            // Not a denial: the request stays pending in the journal, and the extension asks
            // again (the same call, the same request) once a sidecar answers.
            () = self.shutdown.cancelled() => ServerFrame::Error {
                id: Some(id.clone()),
                code: ErrorCode::DiscordUnavailable,
                message: "the sidecar is stopping; the approval stays pending, ask again".into(),
            },
        }
    }
}

/// Where a decision goes: whether the call may run, and why.
pub(super) type ApprovalWaiter = oneshot::Sender<(bool, String)>;

pub(super) fn approval_key(approval_id: i64) -> String {
    format!("approval:{approval_id}")
}

/// The request as it was asked, from its record.
fn request_of(approval: &Approval) -> ApprovalRequest {
    ApprovalRequest {
        tool: approval.tool.clone(),
        input: serde_json::from_str(&approval.input).unwrap_or_default(),
        reason: None,
    }
}

pub(super) fn verdict_reason(approval: &Approval) -> String {
    match (approval.state, approval.decided_by.as_deref()) {
        (ApprovalState::Approved, Some(who)) => format!("approved by {who} in Discord"),
        (ApprovalState::Denied, Some(who)) => format!("denied by {who} in Discord"),
        (ApprovalState::Expired, _) => "no one approved in time; the call was denied".to_owned(),
        (state, _) => format!("the approval is {state}"),
    }
}

impl Sidecar {
    /// Records that no one decided `approval` before its deadline (unless
    /// someone just did): the call is denied, the request in the thread
    /// loses its buttons and says so, and whoever waits is told. Returns
    /// whether this call expired it.
    fn expire(&self, approval: &Approval) -> bool {
        let id = approval.approval_id;
        let expired =
            self.with_outbox(|o| o.decide_approval(id, ApprovalState::Expired, None, now_ms())).unwrap_or(false);
        if expired {
            let secs = self.approvals.policy.timeout_secs;
            let project = self.project_of(&approval.session_id);
            let message =
                decided_message(&request_of(approval), &project, &format!("Expired after {secs} s, denied"), false);
            let _ = self.journal_for_session(&approval.session_id, &approval_key(id), true, &message);
            tracing::info!(audit = true, approval_id = id, "approval expired");
            self.approvals.wake(id, false, format!("no one approved within {secs} s; the call was denied"));
        }
        expired
    }

    /// A click on Approve / Always allow / Deny: an allowed person's first
    /// decision on a pending approval counts; everyone else is told why not, privately.
    pub(super) async fn on_approval_click(&self, interaction: &Interaction, decision: Decision, id: &str) {
        let Ok(approval_id) = id.parse::<i64>() else { return };
        let Some(user) = interaction.author() else { return };
        let roles = interaction.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default();
        let current = self.with_outbox(|o| o.approval(approval_id)).ok().flatten();
        let response = if !self.access.is_allowed(user.id, roles) {
            tracing::info!(audit = true, approval_id, user_id = %user.id, "approval click refused: not on the allowlist");
            private("Only people on this bot's allowlist can approve tool calls.")
        } else if let Some(approval) =
            current.as_ref().filter(|a| a.state == ApprovalState::Pending && a.deadline_ms <= now_ms())
        {
            // Past its deadline (the sidecar was away when it passed): a click decides nothing.
            tracing::info!(audit = true, approval_id, user_id = %user.id, "approval click refused: expired");
            self.expire(approval);
            private("This request expired before anyone decided; the call was denied, so nothing ran.")
        } else {
            let state = decision.state();
            let who = user.global_name.clone().unwrap_or_else(|| user.name.clone());
            match self.with_outbox(|o| o.decide_approval(approval_id, state, Some(&who), now_ms())) {
                Ok(true) => {
                    tracing::info!(audit = true, approval_id, user_id = %user.id, ?decision, "approval decided");
                    let approval = self.with_outbox(|o| o.approval(approval_id)).ok().flatten();
                    let approved = decision.approves();
                    if decision == Decision::AlwaysAllow
                        && let Some(approval) = &approval
                        && let Err(err) =
                            self.with_outbox(|o| o.allow_always(&approval.session_id, &approval.tool, &who, now_ms()))
                    {
                        tracing::error!(error = %err, "cannot record an always-allow");
                    }
                    let verdict = match decision {
                        Decision::Approve => format!("Approved by {who}"),
                        Decision::AlwaysAllow => format!("Always allowed in this session by {who}"),
                        Decision::Deny => format!("Denied by {who}"),
                    };
                    self.approvals.wake(approval_id, approved, format!("{} in Discord", verdict.to_lowercase()));
                    let request = approval.as_ref().map(request_of).unwrap_or_else(|| ApprovalRequest {
                        tool: "tool".into(),
                        input: serde_json::Value::Null,
                        reason: None,
                    });
                    let project = approval.map(|a| self.project_of(&a.session_id)).unwrap_or_default();
                    update_message(&decided_message(&request, &project, &verdict, approved))
                }
                Ok(false) => private("This request was already decided or has expired."),
                Err(err) => {
                    tracing::error!(error = %err, "cannot record a decision");
                    private("The decision could not be recorded; try again.")
                }
            }
        };
        self.respond(interaction, &response, "approval click").await;
    }
}
