//! `omp-discord serve`: the one process per user that owns Discord. OMP
//! extension shims (and the CLI) connect over a Unix socket and speak the
//! NDJSON protocol of `omp_discord_core::protocol`.
//!
//! # Layout
//!
//! - `socket`: binding the private socket, the single-instance lock, peer checks.
//! - `discord`: twilight-http with deadlines, retry caps and readable errors.
//! - this module: connections, the handshake, requests, and the delivery loop.

mod controls;
pub mod discord;
mod forum;
pub mod gateway;
mod headless;
mod inbound;
mod requests;
mod slash;
pub mod socket;
mod typing;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use omp_discord_core::embed::{MessagePayload, coalesce, limits as embed_limits, redact_payload, validate_message};
use omp_discord_core::protocol::{
    ClientFrame, ErrorCode, MAX_FRAME_BYTES, NotifyRequest, PROTOCOL_VERSION, ServerFrame, decode_client_frame,
    encode_frame,
};
use tokio::net::UnixStream;
use tokio::sync::{Mutex, Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use twilight_model::id::Id;

use crate::config::Config;
use discord::{Discord, SendError, THREAD_ALREADY_CREATED};
use omp_discord_core::format::project_name;
use omp_discord_core::redact::redact_text;
use omp_discord_core::templates::{SessionStart, session_started};
use omp_discord_core::thread::thread_name;
use twilight_model::id::marker::ChannelMarker;

/// Outbox destinations: a session (its thread) or a plain channel.
const SESSION_PREFIX: &str = "session:";
const CHANNEL_PREFIX: &str = "channel:";
/// The one destination of the webhook-only mode: the webhook's channel.
const WEBHOOK_DESTINATION: &str = "webhook";
/// Discord's "Unknown Channel" error code.
const UNKNOWN_CHANNEL: u64 = 10_003;
/// Discord's "Unknown Message" error code.
const UNKNOWN_MESSAGE: u64 = 10_008;

fn parse_id<T>(raw: &str) -> Option<Id<T>> {
    raw.parse().ok().and_then(Id::new_checked)
}
use crate::store::{Approval, Inbound, Outbox, OutboxError, Pending};
use omp_discord_core::approval::{
    ApprovalPolicy, ApprovalState, Decision, approval_message, decided_message, parse_custom_id,
};
use omp_discord_core::ask::AskState;
use omp_discord_core::inbound::prepare_inbound;
use omp_discord_core::protocol::SessionRef;
use omp_discord_core::templates::ApprovalRequest;
use twilight_model::application::interaction::{Interaction, InteractionData};
use twilight_model::channel::Message;
use twilight_model::id::marker::{MessageMarker, RoleMarker, UserMarker};

/// Who may drive sessions from Discord (reply, approve, start work).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Allowed user ids.
    pub users: HashSet<Id<UserMarker>>,
    /// Allowed role ids.
    pub roles: HashSet<Id<RoleMarker>>,
    /// Which tool calls wait for an allowed person's Approve.
    pub approvals: ApprovalPolicy,
}

/// Adds the application's owner to the allowlist: with no configuration,
/// only the person who owns the bot can drive sessions.
pub async fn learn_owner(sidecar: Arc<Sidecar>) {
    let Some(discord) = sidecar.discord.as_ref() else { return };
    match discord.application_owner().await {
        Ok(Some(owner)) => {
            tracing::info!(user_id = %owner, "the application's owner may drive sessions");
            sidecar.allow_user(owner);
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "could not look up the application's owner"),
    }
}

/// Sessions seen within this window are caught up on after a gateway gap.
const BACKFILL_WINDOW_MS: i64 = 7 * 24 * 3600 * 1000;
/// At most this many sessions are caught up on.
const BACKFILL_SESSIONS: usize = 50;
/// How long a destination rests after Discord was unreachable, doubling up to the max.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);
/// How long delivered rows stay in the journal (for `status` and debugging).
const KEEP_DELIVERED_MS: i64 = 24 * 3600 * 1000;
/// How often the delivery loop looks for spool files left while no client connects.
const SPOOL_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long sends in flight may finish after shutdown was requested.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Shared state of a running sidecar.
#[derive(Debug)]
pub struct Sidecar {
    config: Config,
    /// The bot's client, when a token is configured.
    discord: Option<Discord>,
    /// The webhook-only mode's client (no token, a webhook URL): posts and edits only.
    webhook: Option<Discord>,
    started: Instant,
    clients: AtomicUsize,
    in_flight: AtomicUsize,
    delivered: AtomicU64,
    failed: AtomicU64,
    last_error: Mutex<Option<String>>,
    outbox: SyncMutex<Outbox>,
    /// Wakes the delivery loop when a row is journaled.
    wake: Notify,
    /// Clients waiting for the outcome of a journaled row, by sequence number.
    waiters: SyncMutex<HashMap<i64, oneshot::Sender<ServerFrame>>>,
    /// Destinations whose merged message Discord refused: their next send is one row.
    split_next: SyncMutex<HashSet<String>>,
    /// Prompts that came from an interaction (the Continue modal, `/omp ask`),
    /// not a message: nothing to put a ✅ on.
    interaction_prompts: SyncMutex<HashSet<u64>>,
    /// Destinations that have a delivery worker.
    active: SyncMutex<HashSet<String>>,
    /// The connection serving each attached session, for inbound replies.
    attached: SyncMutex<HashMap<String, mpsc::Sender<ServerFrame>>>,
    /// Who may drive a session from Discord: the configured users, plus the
    /// application's owner once known.
    allowed_users: SyncMutex<HashSet<Id<UserMarker>>>,
    /// Roles whose members may drive a session.
    allowed_roles: HashSet<Id<RoleMarker>>,
    /// Which tool calls wait for a person.
    approvals: ApprovalPolicy,
    /// Tool calls waiting for a decision, by approval id.
    approval_waiters: SyncMutex<HashMap<i64, Vec<ApprovalWaiter>>>,
    /// Held while the spool is imported, so two connections never import a file twice.
    spool_lock: SyncMutex<()>,
    /// Questions waiting for an answer, by ask id.
    ask_waiters: SyncMutex<HashMap<i64, Vec<oneshot::Sender<requests::AskOutcome>>>>,
    /// Each author's reply rate, when limited.
    limiter: Option<SyncMutex<omp_discord_core::inbound::InboundLimiter>>,
    /// Sessions whose thread shows the bot typing.
    typing: typing::Typing,
    /// omp processes `/omp ask` started, until they attach their session.
    launches: headless::Launches,
    /// Which channels are forums, and the forum posts being opened.
    forums: forum::Forums,
    /// `connecting`, `ready` or `closed`, for status.
    pub gateway_state: SyncMutex<String>,
    /// Cancelled when the sidecar should stop.
    pub shutdown: CancellationToken,
}

impl Sidecar {
    /// Creates the state for `config`, with its outbox and allowlist.
    pub fn new(config: Config, outbox: Outbox, access: Access) -> Arc<Self> {
        let discord = config.token.as_ref().map(|token| Discord::new(token, &config.api));
        let webhook = match (&discord, &config.webhook) {
            (None, Some(webhook)) => Some(Discord::for_webhook(webhook.clone(), &config.api)),
            _ => None,
        };
        let limiter = config
            .inbound_rate_limit
            .map(|limit| SyncMutex::new(omp_discord_core::inbound::InboundLimiter::new(limit)));
        Arc::new(Self {
            config,
            discord,
            webhook,
            started: Instant::now(),
            clients: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
            outbox: SyncMutex::new(outbox),
            wake: Notify::new(),
            waiters: SyncMutex::new(HashMap::new()),
            split_next: SyncMutex::new(HashSet::new()),
            interaction_prompts: SyncMutex::new(HashSet::new()),
            active: SyncMutex::new(HashSet::new()),
            attached: SyncMutex::new(HashMap::new()),
            allowed_users: SyncMutex::new(access.users),
            allowed_roles: access.roles,
            approvals: access.approvals,
            approval_waiters: SyncMutex::new(HashMap::new()),
            ask_waiters: SyncMutex::new(HashMap::new()),
            spool_lock: SyncMutex::new(()),
            limiter,
            typing: typing::Typing::default(),
            launches: headless::Launches::default(),
            forums: forum::Forums::default(),
            gateway_state: SyncMutex::new("off".into()),
            shutdown: CancellationToken::new(),
        })
    }

    /// The project (working directory's name) of a recorded session, for message footers.
    fn project_of(&self, session_id: &str) -> String {
        self.with_outbox(|o| o.session(session_id))
            .ok()
            .flatten()
            .map(|s| project_name(s.cwd.as_deref().unwrap_or_default()))
            .unwrap_or_default()
    }

    /// The client that delivers the outbox: the bot's, else the webhook's.
    fn client(&self) -> Option<&Discord> {
        self.discord.as_ref().or(self.webhook.as_ref())
    }

    fn is_idle(&self) -> bool {
        self.clients.load(Ordering::SeqCst) == 0 && self.in_flight.load(Ordering::SeqCst) == 0
    }

    /// The sidecar's state, for `status` and the metrics endpoint.
    pub async fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("OMP_DISCORD_COMMIT"),
            "protocol": PROTOCOL_VERSION,
            "pid": std::process::id(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "socket": self.config.socket.display().to_string(),
            "token_configured": self.config.token.is_some(),
            "mode": if self.discord.is_some() { "bot" } else if self.webhook.is_some() { "webhook" } else { "unconfigured" },
            "home_channel_id": self.config.home_channel.map(|id| id.to_string()),
            "projects": self.config.projects.iter().map(|p| serde_json::json!({
                "path": p.path(),
                "channel_id": p.channel.map(|c| c.to_string()),
                "dirs": crate::config::project_dirs(p).len(),
            })).collect::<Vec<_>>(),
            "clients": self.clients.load(Ordering::SeqCst),
            "in_flight": self.in_flight.load(Ordering::SeqCst),
            "delivered": self.delivered.load(Ordering::SeqCst),
            "failed": self.failed.load(Ordering::SeqCst),
            "last_error": self.last_error.lock().await.clone(),
            "queue": self.with_outbox(|outbox| outbox.stats()).ok().map(|stats| serde_json::json!({
                "depth": stats.pending,
                "oldest_age_secs": stats.oldest_pending_ms.map(|created| (now_ms() - created).max(0) / 1000),
            })),
            "config_file": self.config.file.as_ref().map(|path| path.display().to_string()),
            "config_warnings": self.config.warnings,
            "api": self.config.api.origin(),
            "outbox": self.with_outbox(|outbox| outbox.stats()).ok(),
            "threads": self.config.threads,
            "gateway": self.gateway_state.lock().expect("gateway state lock").clone(),
            "rate_limits": match (&self.discord, &self.webhook) {
                (Some(discord), _) => Some(discord.headroom(self.config.home_channel).await),
                (None, Some(webhook)) => Some(webhook.headroom(None).await),
                (None, None) => None,
            },
            "attached_sessions": self.attached.lock().expect("attached lock").len(),
            "typing_sessions": self.typing.active(),
            "sessions": self.with_outbox(|outbox| outbox.recent_sessions(20)).ok().map(|sessions| {
                sessions
                    .into_iter()
                    .map(|s| serde_json::json!({
                        "session_id": s.session_id,
                        "project": project_name(s.cwd.as_deref().unwrap_or_default()),
                        "host": s.host,
                        "thread_id": s.thread_id,
                        "channel_id": s.channel_id,
                    }))
                    .collect::<Vec<_>>()
            }),
        })
    }

    fn with_outbox<T>(&self, f: impl FnOnce(&mut Outbox) -> Result<T, OutboxError>) -> Result<T, OutboxError> {
        let mut outbox = self.outbox.lock().expect("no code panics while holding the outbox");
        f(&mut outbox)
    }

    /// Journals a notification, tells the client it is accepted, then waits
    /// for the delivery loop to report the outcome.
    /// Validates and journals a notification. Called in frame order on the
    /// connection (never from a spawned task), so the journal keeps each
    /// client's order. Returns the journal position and a receiver for the
    /// outcome, or the error frame to send.
    fn accept(
        &self,
        request: NotifyRequest,
        host: &str,
    ) -> Result<(i64, oneshot::Receiver<ServerFrame>), Box<ServerFrame>> {
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
        let destination = match (&request.channel_id, home) {
            (Some(_), None) => {
                return Err(error(
                    ErrorCode::NotConfigured,
                    "the webhook-only mode posts only to its webhook's channel; posting to other channels needs \
                     a bot token (OMP_DISCORD_TOKEN)"
                        .to_owned(),
                ));
            }
            (None, None) => WEBHOOK_DESTINATION.to_owned(),
            (Some(raw), Some(_)) => match parse_id::<ChannelMarker>(raw) {
                Some(named) => format!("{CHANNEL_PREFIX}{named}"),
                None => {
                    return Err(error(
                        ErrorCode::UnknownChannel,
                        format!("{:?} is not a channel id", redact_text(raw)),
                    ));
                }
            },
            (None, Some(_)) if self.config.threads => format!("{SESSION_PREFIX}{}", session.id),
            (None, Some(home)) => {
                let channel = self.config.channel_for(session.cwd.as_deref().unwrap_or_default()).unwrap_or(home);
                format!("{CHANNEL_PREFIX}{channel}")
            }
        };
        let journaled = self.with_outbox(|outbox| {
            let now = now_ms();
            let seq = outbox.atomically(|outbox| {
                record_session(outbox, session, host, now)?;
                let seq = outbox.enqueue(&destination, &session.id, &id, &body, &nonce, now)?;
                if request.key.is_some() {
                    outbox.set_key(seq, request.key.as_deref(), request.edit)?;
                }
                Ok(seq)
            })?;
            // Registered under the same lock, so the delivery loop cannot finish first unseen.
            self.waiters.lock().expect("waiters lock").insert(seq, done);
            Ok(seq)
        });
        match journaled {
            Ok(seq) => {
                crate::failpoint::hit("after_journal");
                tracing::debug!(seq, request_id = %id, "message journaled");
                self.typing.observe(&session.id, request.key.as_deref(), request.edit, &payload);
                self.wake.notify_one();
                Ok((seq, outcome))
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot journal a message");
                Err(error(
                    ErrorCode::DiscordUnavailable,
                    format!(
                        "the message was not accepted: {err}; check the state directory's disk space and permissions"
                    ),
                ))
            }
        }
    }

    /// Registers `tx` as the connection of `session` and sends it the replies
    /// it has not acknowledged yet.
    async fn attach(
        &self,
        session: &SessionRef,
        host: &str,
        tx: &mpsc::Sender<ServerFrame>,
    ) -> Result<(), OutboxError> {
        let pending = self.with_outbox(|o| {
            record_session(o, session, host, now_ms())?;
            o.pending_inbound(&session.id)
        })?;
        self.attached.lock().expect("attached lock").insert(session.id.clone(), tx.clone());
        for inbound in pending {
            let _ = tx.send(inbound_frame(inbound)).await;
        }
        Ok(())
    }

    /// Learns the application's owner, who may always drive sessions.
    pub fn allow_user(&self, user: Id<UserMarker>) {
        self.allowed_users.lock().expect("allowlist lock").insert(user);
    }

    fn is_allowed(&self, user: Id<UserMarker>, roles: &[Id<RoleMarker>]) -> bool {
        self.allowed_users.lock().expect("allowlist lock").contains(&user)
            || roles.iter().any(|role| self.allowed_roles.contains(role))
    }

    /// Journals a message the sidecar itself sends for a session (approval
    /// requests and their outcome), with no client waiting for it.
    /// Where the sidecar's own messages about `session_id` go.
    fn destination_for_session(&self, session_id: &str) -> String {
        match self.config.home_channel {
            _ if self.webhook.is_some() => WEBHOOK_DESTINATION.to_owned(),
            Some(home) if !self.config.threads => {
                let cwd = self.with_outbox(|o| o.session(session_id)).ok().flatten().and_then(|s| s.cwd);
                let channel = self.config.channel_for(cwd.as_deref().unwrap_or_default()).unwrap_or(home);
                format!("{CHANNEL_PREFIX}{channel}")
            }
            _ => format!("{SESSION_PREFIX}{session_id}"),
        }
    }

    fn journal_for_session(
        &self,
        session_id: &str,
        key: &str,
        edit: bool,
        payload: &MessagePayload,
    ) -> Result<(), OutboxError> {
        let destination = self.destination_for_session(session_id);
        let body = serde_json::to_string(payload).expect("payloads serialize");
        let nonce = fresh_nonce(session_id, key).to_string();
        self.with_outbox(|o| {
            let seq = o.enqueue(&destination, session_id, key, &body, &nonce, now_ms())?;
            o.set_key(seq, Some(key), edit)
        })?;
        self.wake.notify_one();
        Ok(())
    }

    /// A tool call that needs a person: posts the request with Approve / Deny
    /// buttons in the session's thread (once per call, even when asked again
    /// after a reconnect) and waits for the first allowed click or the deadline.
    async fn approve(
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
        let timeout_ms = i64::try_from(self.approvals.timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
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
        self.approval_waiters.lock().expect("approval waiters lock").entry(approval.approval_id).or_default().push(tx);
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
                let expired = self.with_outbox(|o| o.decide_approval(approval.approval_id, ApprovalState::Expired, None, now_ms())).unwrap_or(false);
                if expired {
                    let secs = self.approvals.timeout_secs;
                    let message = decided_message(&request, &project, &format!("Expired after {secs} s, denied"), false);
                    let _ = self.journal_for_session(&session.id, &approval_key(approval.approval_id), true, &message);
                    tracing::info!(audit = true, approval_id = approval.approval_id, "approval expired");
                    self.wake_approval(approval.approval_id, false, format!("no one approved within {secs} s; the call was denied"));
                }
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

    fn wake_approval(&self, approval_id: i64, approved: bool, reason: String) {
        let waiters =
            self.approval_waiters.lock().expect("approval waiters lock").remove(&approval_id).unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send((approved, reason.clone()));
        }
    }

    /// A button click from the gateway: an allowed person's first decision on
    /// a pending approval counts; everyone else is told why not, privately.
    pub async fn on_interaction(&self, interaction: &Interaction) {
        if self.on_run_control(interaction).await {
            return;
        }
        if let Some(InteractionData::ApplicationCommand(data)) = &interaction.data {
            let data = serde_json::to_value(data).unwrap_or_default();
            return self.on_command(interaction, data).await;
        }
        let Some(InteractionData::MessageComponent(data)) = &interaction.data else { return };
        if let Some((ask_id, option)) = omp_discord_core::ask::parse_custom_id(&data.custom_id) {
            return self.on_answer_click(interaction, ask_id, option).await;
        }
        let Some((decision, id)) = parse_custom_id(&data.custom_id) else { return };
        let Some(discord) = &self.discord else { return };
        let Ok(approval_id) = id.parse::<i64>() else { return };
        let Some(user) = interaction.author() else { return };
        let roles = interaction.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default();
        let private = |text: &str| serde_json::json!({ "type": 4, "data": { "content": text, "flags": 64, "allowed_mentions": { "parse": [] } } });
        let response = if !self.is_allowed(user.id, roles) {
            tracing::info!(audit = true, approval_id, user_id = %user.id, "approval click refused: not on the allowlist");
            private("Only people on this bot's allowlist can approve tool calls.")
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
                    self.wake_approval(approval_id, approved, format!("{} in Discord", verdict.to_lowercase()));
                    let request = approval
                        .as_ref()
                        .map(|a| ApprovalRequest {
                            tool: a.tool.clone(),
                            input: serde_json::from_str(&a.input).unwrap_or_default(),
                            reason: None,
                        })
                        .unwrap_or_else(|| ApprovalRequest {
                            tool: "tool".into(),
                            input: serde_json::Value::Null,
                            reason: None,
                        });
                    let project = approval.map(|a| self.project_of(&a.session_id)).unwrap_or_default();
                    let mut message = serde_json::to_value(decided_message(&request, &project, &verdict, approved))
                        .expect("payloads serialize");
                    // Named empty, or Discord keeps the buttons.
                    message["components"] = serde_json::json!([]);
                    serde_json::json!({ "type": 7, "data": message })
                }
                Ok(false) => private("This request was already decided or has expired."),
                Err(err) => {
                    tracing::error!(error = %err, "cannot record a decision");
                    private("The decision could not be recorded; try again.")
                }
            }
        };
        if let Err(err) = discord.interaction_callback(interaction.id, &interaction.token, &response).await {
            tracing::warn!(error = %err, "could not answer an interaction");
        }
    }

    /// A click on one of a question's answer buttons.
    async fn on_answer_click(&self, interaction: &Interaction, ask_id: i64, option: usize) {
        let (Some(discord), Some(user)) = (&self.discord, interaction.author()) else { return };
        let roles = interaction.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default();
        let private = |text: &str| serde_json::json!({ "type": 4, "data": { "content": text, "flags": 64, "allowed_mentions": { "parse": [] } } });
        let ask = self.with_outbox(|o| o.ask(ask_id)).ok().flatten();
        let response = match ask {
            _ if !self.is_allowed(user.id, roles) => {
                tracing::info!(audit = true, ask_id, user_id = %user.id, "answer refused: not on the allowlist");
                private("Only people on this bot's allowlist can answer the agent.")
            }
            Some(ask) if ask.state == AskState::Pending && option < ask.options.len() => {
                let who = user.global_name.clone().unwrap_or_else(|| user.name.clone());
                let choice = ask.options[option].clone();
                let project = self.project_of(&ask.session_id);
                let headline = format!("Answered by {who}: {choice}");
                if self.settle_ask(&ask, AskState::Answered, Some(&choice), Some(&who), &headline, &project) {
                    // The journaled edit replaces the message too; this answer just closes the click.
                    let mut message = serde_json::to_value(omp_discord_core::ask::settled_message(
                        &ask.question,
                        &headline,
                        true,
                        &project,
                    ))
                    .expect("payloads serialize");
                    message["components"] = serde_json::json!([]);
                    serde_json::json!({ "type": 7, "data": message })
                } else {
                    private("This question was already answered or has expired.")
                }
            }
            _ => private("This question was already answered or has expired."),
        };
        if let Err(err) = discord.interaction_callback(interaction.id, &interaction.token, &response).await {
            tracing::warn!(error = %err, "could not answer an interaction");
        }
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
        if !self.is_allowed(message.author.id, roles) {
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
        let tx = self.attached.lock().expect("attached lock").get(&session_id).cloned();
        match tx {
            Some(tx) => {
                let _ = tx.send(inbound_frame(inbound)).await;
            }
            None => self.note_session_away(&session_id, message.id),
        }
    }

    /// Journals the reports that extensions left in `<state>/spool` when they
    /// could not reach a sidecar (one JSON `notify` frame per line), oldest
    /// file first, and removes each file once its frames are journaled.
    /// Returns how many frames were journaled.
    pub fn import_spool(&self) -> usize {
        let _importing = self.spool_lock.lock().expect("spool lock");
        let dir = self.config.state_dir.join(omp_discord_core::paths::SPOOL_DIR_NAME);
        let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
        let mut files: Vec<std::path::PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
            .collect();
        files.sort();
        let mut journaled = 0;
        for spooled in files {
            // Claimed by renaming, as the shim does: of the two, exactly one journals a file.
            let file = spooled.with_extension("jsonl.importing");
            if std::fs::rename(&spooled, &file).is_err() {
                continue;
            }
            let text = match std::fs::read_to_string(&file) {
                Ok(text) => text,
                Err(err) => {
                    tracing::warn!(file = %file.display(), error = %err, "cannot read a spool file; left in place");
                    let _ = std::fs::rename(&file, &spooled);
                    continue;
                }
            };
            for (n, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
                match decode_client_frame(line.as_bytes()) {
                    Ok(ClientFrame::Notify(request)) => match self.accept(request, "") {
                        Ok(_) => journaled += 1,
                        Err(frame) => {
                            tracing::warn!(file = %file.display(), line = n + 1, ?frame, "a spooled report was refused")
                        }
                    },
                    Ok(_) | Err(_) => {
                        tracing::warn!(file = %file.display(), line = n + 1, "a spool line is not a notify frame; skipped")
                    }
                }
            }
            if let Err(err) = std::fs::remove_file(&file) {
                tracing::warn!(file = %file.display(), error = %err, "cannot remove an imported spool file");
            }
        }
        if journaled > 0 {
            tracing::info!(reports = journaled, "journaled reports spooled while no sidecar ran");
        }
        journaled
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
    fn ack_inbound(self: &Arc<Self>, message_id: &str) -> Option<(Id<ChannelMarker>, Id<MessageMarker>)> {
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
        let from_interaction = self.interaction_prompts.lock().expect("prompts lock").remove(&id.get());
        (!from_interaction).then_some((thread, id))
    }

    /// Remembers that the prompt journaled under `interaction` came from an interaction.
    pub(super) fn prompt_from_interaction(&self, interaction: u64) {
        self.interaction_prompts.lock().expect("prompts lock").insert(interaction);
    }

    /// The bot's ✅ on a reply that reached OMP.
    async fn show_received(&self, thread: Id<ChannelMarker>, id: Id<MessageMarker>) {
        if let Some(discord) = &self.discord
            && let Err(err) = discord.react(thread, id, "✅").await
        {
            tracing::debug!(error = %err, "could not react to a reply");
        }
    }

    fn report(&self, seq: i64, frame: ServerFrame) {
        if let Some(waiter) = self.waiters.lock().expect("waiters lock").remove(&seq) {
            let _ = waiter.send(frame);
        }
    }

    /// The thread of `session_id`, opening it when it does not exist yet: in a
    /// text channel, the starter message, then a thread from it; in a forum,
    /// a post (see `forum`). Each step is recorded, so a crash in between
    /// resumes instead of opening a second one.
    /// `starter` is the session card to open it with (else a default one);
    /// the answer says whether that card was posted here. A thread opened
    /// before the first prompt was known is renamed once it is.
    async fn ensure_thread(
        &self,
        discord: &Discord,
        session_id: &str,
        starter: Option<&MessagePayload>,
    ) -> Result<(Id<ChannelMarker>, bool), SendError> {
        let record = |err: OutboxError| SendError::Unavailable { attempts: 0, last: err.to_string() };
        let session = self.with_outbox(|o| o.session(session_id)).map_err(record)?;
        let Some(session) = session else {
            return Err(SendError::Unavailable { attempts: 0, last: "the session record is missing".into() });
        };
        // Chosen once and kept, so a changed `[[projects]]` never splits a session's messages.
        let home = match session.channel_id.as_deref().and_then(parse_id) {
            Some(channel) => channel,
            None => {
                let cwd = session.cwd.as_deref().unwrap_or_default();
                let channel = self.config.channel_for(cwd).expect("notify refuses requests without a home channel");
                self.with_outbox(|o| o.set_channel(session_id, &channel.to_string())).map_err(record)?;
                channel
            }
        };
        let name = thread_name(&project_name(session.cwd.as_deref().unwrap_or_default()), session.prompt.as_deref());
        if let Some(thread) = session.thread_id.as_deref().and_then(parse_id) {
            if !session.named_with_prompt && session.prompt.is_some() {
                // Best effort: the name is cosmetic, the message must still go out.
                match discord.rename_channel(thread, &name).await {
                    Ok(()) => {
                        let _ = self.with_outbox(|o| o.set_named_with_prompt(session_id, true));
                    }
                    Err(err) => tracing::debug!(error = %err, "could not rename a thread"),
                }
            }
            return Ok((thread, false));
        }
        let default_card;
        let card = match starter {
            Some(card) => card,
            None => {
                default_card = session_started(&SessionStart {
                    cwd: session.cwd.clone().unwrap_or_default(),
                    host: session.host.clone(),
                    model: None,
                    prompt: session.prompt.clone(),
                });
                &default_card
            }
        };
        let kind = self.home(discord, home).await?;
        if kind.forum {
            let named = session.prompt.is_some();
            let post = self.open_forum_post(discord, session_id, home, &kind, &name, card, named).await?;
            return Ok((post, starter.is_some()));
        }
        let (starter_id, posted_card) = match session.starter_message_id.as_deref().and_then(parse_id) {
            Some(starter) => (starter, false),
            None => {
                let nonce = session.starter_nonce.parse().unwrap_or_default();
                crate::failpoint::hit("before_starter");
                let (_, id) = discord.create_message(home, card, nonce).await?;
                crate::failpoint::hit("after_starter_before_record");
                self.with_outbox(|o| o.set_starter(session_id, &id.to_string())).map_err(record)?;
                (id, starter.is_some())
            }
        };
        let thread = match discord.start_thread(home, starter_id, &name).await {
            Ok(thread) => thread,
            // Created before a crash: a thread started from a message has the message's id.
            Err(err) if err.code() == Some(THREAD_ALREADY_CREATED) => starter_id.cast(),
            Err(err) => return Err(err),
        };
        crate::failpoint::hit("after_thread_before_record");
        self.with_outbox(|o| {
            o.set_thread(session_id, &thread.to_string())?;
            o.set_named_with_prompt(session_id, session.prompt.is_some())
        })
        .map_err(record)?;
        tracing::info!(session_id, thread_id = %thread, "thread created");
        Ok((thread, posted_card))
    }

    /// Sends the next message of one destination: a claimed batch again, or
    /// as many of its oldest rows as coalesce into one message. Returns
    /// whether the destination may go on (false: rest, then retry).
    async fn deliver_next(&self, discord: &Discord, rows: Vec<Pending>) -> bool {
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
        if head.batch.is_none()
            && let Err(err) = self.with_outbox(|o| o.claim(&seqs))
        {
            tracing::error!(error = %err, "cannot update the outbox");
            return false;
        }
        let nonce = head.nonce.parse().unwrap_or_default();
        // The session card (key `session:…`) is the thread's starter message in the home channel.
        let session_card = head.key.as_deref().is_some_and(|key| key.starts_with(SESSION_PREFIX));
        let target = if let Some(session_id) = destination.strip_prefix(SESSION_PREFIX) {
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
        } else if let Some(channel) = destination.strip_prefix(CHANNEL_PREFIX).and_then(parse_id) {
            Ok(channel)
        } else if destination == WEBHOOK_DESTINATION {
            // The webhook posts to its own channel; Discord's answer says which.
            Ok(Id::new(u64::MAX))
        } else {
            self.finish_failed(batch, "unknown destination").await;
            return true;
        };
        crate::failpoint::hit("before_send");
        let sent = match target {
            Ok(channel) => match self.post_or_edit(discord, head, channel, &message, nonce).await {
                Err(err) if err.code() == Some(UNKNOWN_CHANNEL) && destination.starts_with(SESSION_PREFIX) => {
                    // Someone deleted the session's thread: open a new one on the next attempt.
                    let session_id = &destination[SESSION_PREFIX.len()..];
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
            Err(SendError::Rejected { status, code, message }) if batch.len() > 1 => {
                // One row may have broken the merged message: retry each on its own.
                tracing::warn!(%destination, status, code, %message, "merged message refused; splitting the batch");
                let _ = self.with_outbox(|o| o.unclaim(seqs[0]));
                self.split_next.lock().expect("split lock").insert(destination);
                true
            }
            Err(err @ SendError::Rejected { .. }) => {
                tracing::warn!(%destination, error = %err, "discord refused a message");
                let ServerFrame::Error { code, message, .. } = requests::error_frame(String::new(), &err) else {
                    unreachable!("error_frame builds an error")
                };
                self.finish_failed_with(batch, code, &message).await;
                true
            }
            Err(err) => {
                // Unreachable or unauthorized: keep the rows (and everything behind them) and rest.
                tracing::warn!(%destination, error = %err, "delivery postponed");
                *self.last_error.lock().await = Some(err.to_string());
                let text = format!("{err}; the message stays queued and will be retried");
                for row in batch {
                    let frame = ServerFrame::Error {
                        id: Some(row.request_id.clone()),
                        code: ErrorCode::DiscordUnavailable,
                        message: text.clone(),
                    };
                    self.report(row.seq, frame);
                }
                false
            }
        }
    }

    /// Where a session's starter message is: `(home channel, message)`, or,
    /// in a forum, `(post, message)`: a post's first message lives in the
    /// post and has its id.
    async fn starter_of(
        &self,
        discord: &Discord,
        session_id: &str,
    ) -> Result<Option<(Id<ChannelMarker>, Id<MessageMarker>)>, SendError> {
        let Some(session) = self.with_outbox(|o| o.session(session_id)).ok().flatten() else { return Ok(None) };
        let channel = session.channel_id.as_deref().and_then(parse_id).or(self.config.home_channel);
        let (Some(channel), Some(starter)) = (channel, session.starter_message_id.as_deref().and_then(parse_id)) else {
            return Ok(None);
        };
        if self.home(discord, channel).await?.forum {
            return Ok(Some((starter.cast(), starter)));
        }
        Ok(Some((channel, starter)))
    }

    /// Records a sent message (`at`: where it is) for every row of its batch,
    /// remembers its key, and tells the waiting clients.
    async fn finish_delivered(
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
        if let Err(err) = self.with_outbox(|o| o.mark_delivered(seqs, &message_id.to_string(), now_ms())) {
            // Sent but not recorded: the resend reuses the nonce, so Discord will not post twice.
            tracing::error!(error = %err, "cannot record a delivery");
            return false;
        }
        self.delivered.fetch_add(seqs.len() as u64, Ordering::SeqCst);
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
    async fn post_or_edit(
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

    async fn finish_failed(&self, rows: &[Pending], reason: &str) {
        self.finish_failed_with(rows, ErrorCode::DiscordRejected, reason).await;
    }

    async fn finish_failed_with(&self, rows: &[Pending], code: ErrorCode, reason: &str) {
        let now = now_ms();
        for row in rows {
            let _ = self.with_outbox(|o| o.mark_failed(row.seq, reason, now));
            self.failed.fetch_add(1, Ordering::SeqCst);
            let frame = ServerFrame::Error { id: Some(row.request_id.clone()), code, message: reason.to_owned() };
            self.report(row.seq, frame);
        }
        *self.last_error.lock().await = Some(reason.to_owned());
    }
}

/// All payloads of a claimed batch as one message (they were merged once already).
fn coalesce_all(payloads: &[MessagePayload]) -> MessagePayload {
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
            let _ = sidecar.with_outbox(|o| o.prune(now_ms() - KEEP_DELIVERED_MS));
        }
        if last_spool_check.elapsed() > SPOOL_CHECK_EVERY {
            // A shim that could not connect in time spools its reports at exit,
            // possibly after the last client said hello: pick them up anyway.
            last_spool_check = Instant::now();
            sidecar.import_spool();
        }
        {
            // Under the same lock a worker takes to retire, so no destination is left without one.
            let mut active = sidecar.active.lock().expect("active lock");
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
            () = sidecar.wake.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    workers.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, workers.wait()).await.is_err() {
        tracing::warn!("sends still in flight at shutdown; they resume after a restart");
    }
    // Whoever still waits learns that the message stays queued for the next start.
    sidecar.waiters.lock().expect("waiters lock").clear();
}

async fn destination_worker(sidecar: Arc<Sidecar>, destination: String) {
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
            let mut active = sidecar.active.lock().expect("active lock");
            // Checked again under the lock: a row journaled meanwhile keeps this worker alive.
            if sidecar.with_outbox(|o| o.next_rows(&destination, 1)).map_or(true, |rows| rows.is_empty()) {
                active.remove(&destination);
                return;
            }
            continue;
        }
        // After a refused merge, the next attempt sends the head alone.
        if sidecar.split_next.lock().expect("split lock").remove(&destination) {
            rows.truncate(1);
        }
        if sidecar.deliver_next(discord, rows).await {
            pause = RETRY_PAUSE;
        } else {
            tokio::select! {
                () = sidecar.shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
        }
    }
    sidecar.active.lock().expect("active lock").remove(&destination);
}

/// Where a decision goes: whether the call may run, and why.
type ApprovalWaiter = oneshot::Sender<(bool, String)>;

fn approval_key(approval_id: i64) -> String {
    format!("approval:{approval_id}")
}

fn verdict_reason(approval: &Approval) -> String {
    match (approval.state, approval.decided_by.as_deref()) {
        (ApprovalState::Approved, Some(who)) => format!("approved by {who} in Discord"),
        (ApprovalState::Denied, Some(who)) => format!("denied by {who} in Discord"),
        (ApprovalState::Expired, _) => "no one approved in time; the call was denied".to_owned(),
        (state, _) => format!("the approval is {state}"),
    }
}

/// Records a session the sidecar hears of (a notify, an attach, an approval),
/// with the nonce its thread's starter message will use.
/// The prompt and directory are redacted again, so no client can bypass it.
fn record_session(outbox: &mut Outbox, session: &SessionRef, host: &str, now: i64) -> Result<(), OutboxError> {
    let starter_nonce = fresh_nonce(&session.id, "starter").to_string();
    let prompt = session.prompt.as_deref().map(redact_text);
    let cwd = session.cwd.as_deref().map(redact_text);
    outbox.touch_session(&session.id, cwd.as_deref(), prompt.as_deref(), host, &starter_nonce, now)
}

fn inbound_frame(inbound: Inbound) -> ServerFrame {
    ServerFrame::Inbound {
        session_id: inbound.session_id,
        message_id: inbound.message_id.to_string(),
        author_id: inbound.author_id,
        text: inbound.text,
        deliver_as: inbound.delivery,
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A random nonce for one request; `Discord::create_message` reuses it for
/// that request's retries. (A u64 has at most 20 digits; Discord allows 25.)
fn fresh_nonce(session: &str, request: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(session.as_bytes());
    hasher.write(request.as_bytes());
    hasher.finish()
}

/// Serves `listener` until `sidecar.shutdown` is cancelled, then waits (up to
/// `drain`) for requests in flight.
pub async fn run(listener: tokio::net::UnixListener, sidecar: Arc<Sidecar>, drain: Duration) {
    let tasks = TaskTracker::new();
    loop {
        tokio::select! {
            () = sidecar.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let sidecar = sidecar.clone();
                    let span = tracing::debug_span!("connection");
                    tasks.spawn(handle_connection(stream, sidecar, tasks.clone()).instrument(span));
                }
                Err(err) => tracing::warn!(error = %err, "failed to accept a connection"),
            },
        }
    }
    tasks.close();
    if tokio::time::timeout(drain, tasks.wait()).await.is_err() {
        tracing::warn!(
            in_flight = sidecar.in_flight.load(Ordering::SeqCst),
            "shutdown deadline passed with requests in flight"
        );
    }
}

/// Cancels `sidecar.shutdown` once nobody has been connected for `idle`.
pub async fn exit_when_idle(sidecar: Arc<Sidecar>, idle: Duration) {
    let mut idle_since = Instant::now();
    loop {
        tokio::select! {
            () = sidecar.shutdown.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        if !sidecar.is_idle() {
            idle_since = Instant::now();
        } else if idle_since.elapsed() >= idle {
            tracing::info!(idle_secs = idle.as_secs(), "no clients; exiting");
            sidecar.shutdown.cancel();
            return;
        }
    }
}

async fn handle_connection(stream: UnixStream, sidecar: Arc<Sidecar>, tasks: TaskTracker) {
    match socket::peer_is_same_user(&stream) {
        Ok(true) => {}
        Ok(false) | Err(_) => {
            let peer = stream.peer_cred().ok().map(|c| c.uid());
            tracing::warn!(peer_uid = ?peer, "refused a connection from another user");
            // Say why before closing, so the other user's client shows more than a dropped connection.
            let refusal = ServerFrame::Error {
                id: None,
                code: ErrorCode::Forbidden,
                message: format!(
                    "this omp-discord sidecar serves uid {} only; each user runs their own (the extension \
                     starts it), so set OMP_DISCORD_SOCKET to a socket of your own or unset it",
                    rustix::process::getuid().as_raw()
                ),
            };
            let mut stream = stream;
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                use tokio::io::AsyncWriteExt;
                stream.write_all(encode_frame(&refusal).as_bytes()).await
            })
            .await;
            return;
        }
    }
    sidecar.clients.fetch_add(1, Ordering::SeqCst);
    let (read, mut write) = stream.into_split();
    let mut lines = socket::FrameReader::new(read, MAX_FRAME_BYTES);
    let (tx, mut rx) = mpsc::channel::<ServerFrame>(64);
    // One writer per connection, so answers from concurrent requests never interleave.
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Some(frame) = rx.recv().await {
            if write.write_all(encode_frame(&frame).as_bytes()).await.is_err() {
                break;
            }
        }
    });
    let mut greeted = false;
    let mut host = String::new();
    let mut pid = 0;
    loop {
        let line = tokio::select! {
            () = sidecar.shutdown.cancelled() => break,
            line = lines.next() => line,
        };
        let frame = match line {
            Ok(None) => break,
            Ok(Some(socket::Line::Frame(line))) => decode_client_frame(&line),
            Ok(Some(socket::Line::TooLong)) => {
                let message = format!("a frame exceeded {MAX_FRAME_BYTES} bytes and was dropped");
                let _ = tx.send(ServerFrame::Error { id: None, code: ErrorCode::FrameTooLarge, message }).await;
                continue;
            }
            Err(err) => {
                tracing::debug!(error = %err, "connection read failed");
                break;
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => {
                let reply = ServerFrame::Error {
                    id: err.request_id().map(str::to_owned),
                    code: err.code(),
                    message: err.to_string(),
                };
                let _ = tx.send(reply).await;
                continue;
            }
        };
        if !greeted {
            match frame {
                ClientFrame::Hello(hello) if hello.protocol == PROTOCOL_VERSION => {
                    greeted = true;
                    host.clone_from(&hello.host);
                    pid = hello.pid;
                    // A shim that could not reach a sidecar earlier may have left reports behind.
                    sidecar.import_spool();
                    tracing::debug!(client = %hello.client, pid = hello.pid, host = %hello.host, "client connected");
                    let welcome = ServerFrame::Welcome {
                        protocol: PROTOCOL_VERSION,
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        report: sidecar.config.report.clone(),
                        approvals: serde_json::to_value(&sidecar.approvals).unwrap_or_default(),
                        host: rustix::system::uname().nodename().to_string_lossy().into_owned(),
                        spool: sidecar
                            .config
                            .state_dir
                            .join(omp_discord_core::paths::SPOOL_DIR_NAME)
                            .display()
                            .to_string(),
                    };
                    let _ = tx.send(welcome).await;
                }
                ClientFrame::Hello(hello) => {
                    let message = format!(
                        "this sidecar speaks protocol {PROTOCOL_VERSION} but the client ({}) speaks {}; \
                         rebuild the plugin and the sidecar from the same checkout, then run `omp-discord stop`",
                        hello.client, hello.protocol
                    );
                    let _ = tx.send(ServerFrame::Error { id: None, code: ErrorCode::ProtocolMismatch, message }).await;
                    break;
                }
                _ => {
                    let message = "the first frame must be {\"type\":\"hello\",...}".to_owned();
                    let _ = tx.send(ServerFrame::Error { id: None, code: ErrorCode::HandshakeRequired, message }).await;
                    break;
                }
            }
            continue;
        }
        // Journaling happens here, in frame order; only the wait for Discord is spawned.
        let accepted = match frame {
            ClientFrame::Notify(request) => {
                let id = request.id.clone();
                match sidecar.accept(request, &host) {
                    Ok((seq, outcome)) => {
                        let _ = tx.send(ServerFrame::Accepted { id: id.clone(), seq }).await;
                        Some((id, outcome))
                    }
                    Err(reply) => {
                        if let ServerFrame::Error { code, message, .. } = &*reply {
                            tracing::debug!(request_id = %id, %code, %message, "message refused");
                        }
                        let _ = tx.send(*reply).await;
                        continue;
                    }
                }
            }
            ClientFrame::Attach { id, session } => {
                sidecar.launches.attached(pid, &session.id);
                let reply = match sidecar.attach(&session, &host, &tx).await {
                    Ok(()) => ServerFrame::Ok { id },
                    Err(err) => ServerFrame::Error {
                        id: Some(id),
                        code: ErrorCode::DiscordUnavailable,
                        message: format!("cannot attach the session: {err}"),
                    },
                };
                let _ = tx.send(reply).await;
                continue;
            }
            ClientFrame::InboundAck { id, message_id } => {
                // Journaled before the next frame; Discord's ✅ and typing follow on
                // their own, so acknowledgements never queue behind REST calls (a
                // backlog of them would be offered again after a restart).
                if let Some((thread, message)) = sidecar.ack_inbound(&message_id) {
                    let sidecar = sidecar.clone();
                    tasks.spawn(async move { sidecar.show_received(thread, message).await });
                }
                let _ = tx.send(ServerFrame::Ok { id }).await;
                continue;
            }
            other => {
                spawn_request(&tasks, &sidecar, &tx, other);
                continue;
            }
        };
        let Some((id, outcome)) = accepted else { continue };
        let tx = tx.clone();
        let sidecar = sidecar.clone();
        sidecar.in_flight.fetch_add(1, Ordering::SeqCst);
        tasks.spawn(async move {
            let reply = outcome.await.unwrap_or_else(|_| ServerFrame::Error {
                // The sidecar is stopping; the row stays journaled and is sent after a restart.
                id: Some(id),
                code: ErrorCode::DiscordUnavailable,
                message: "the sidecar stopped before delivery; the message stays queued".into(),
            });
            let _ = tx.send(reply).await;
            sidecar.in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
    sidecar.attached.lock().expect("attached lock").retain(|session_id, sender| {
        let kept = !sender.same_channel(&tx);
        if !kept {
            sidecar.typing.detached(session_id);
        }
        kept
    });
    drop(tx);
    let _ = writer.await;
    sidecar.clients.fetch_sub(1, Ordering::SeqCst);
}

/// Frames the connection loop answers itself never reach a spawned task.
fn unhandled(id: String) -> ServerFrame {
    ServerFrame::Error { id: Some(id), code: ErrorCode::MalformedFrame, message: "unexpected frame".to_owned() }
}

/// Answers a request that needs no journal, in its own task.
fn spawn_request(tasks: &TaskTracker, sidecar: &Arc<Sidecar>, tx: &mpsc::Sender<ServerFrame>, frame: ClientFrame) {
    let sidecar = sidecar.clone();
    let tx = tx.clone();
    sidecar.in_flight.fetch_add(1, Ordering::SeqCst);
    tasks.spawn(async move {
        let reply = match frame {
            ClientFrame::Hello(_) => ServerFrame::Error {
                id: None,
                code: ErrorCode::MalformedFrame,
                message: "hello was already sent on this connection".to_owned(),
            },
            ClientFrame::Notify(request) => unhandled(request.id),
            ClientFrame::Attach { id, .. } | ClientFrame::InboundAck { id, .. } => unhandled(id),
            ClientFrame::Approve { id, session, tool_call_id, tool, input } => {
                sidecar.approve(id, session, tool_call_id, tool, input).await
            }
            ClientFrame::Read { id, channel_id, session, limit, before, after } => {
                sidecar.read(id, channel_id, session, limit, before, after).await
            }
            ClientFrame::Directory { id, guild_id } => sidecar.directory(id, guild_id).await,
            ClientFrame::Ask { id, session, ask_id, question, options, timeout_secs } => {
                sidecar.ask(id, session, ask_id, question, options, timeout_secs).await
            }
            ClientFrame::Status { id } => ServerFrame::Status { id, status: sidecar.status().await },
            ClientFrame::Shutdown { id } => {
                tracing::info!("shutdown requested over the socket");
                sidecar.shutdown.cancel();
                ServerFrame::ShuttingDown { id }
            }
        };
        let _ = tx.send(reply).await;
        sidecar.in_flight.fetch_sub(1, Ordering::SeqCst);
    });
}
