//! `omp-discord serve`: the one process per user that owns Discord. OMP
//! extension shims (and the CLI) connect over a Unix socket and speak the
//! NDJSON protocol of `omp_discord_core::protocol`.
//!
//! Each feature is a module with the state it owns; [`Sidecar`] only holds
//! them together with the configuration, the Discord clients and the store.
//! Decisions (texts, limits, policies) are pure functions in
//! `omp_discord_core`; the modules here do the I/O.
//!
//! # Layout
//!
//! - `socket`: binding the private socket, the single-instance lock, peer checks, frame reading.
//! - `connection`: a client's connection: handshake, frames in order, one writer, requests to features.
//! - `intake`: a `notify` checked, redacted, routed to its [`intake::Destination`] and journaled.
//! - `delivery`: the outbox to Discord: a worker per destination, coalescing, edits, rests, outcomes.
//! - `hold`: destinations Discord refuses for missing access or permissions: kept, said once, retried.
//! - `thread`: a session's thread (and `thread::forum`, a forum post), opened once, crash-safe.
//! - `approval`: tool calls that wait for an allowed person's click.
//! - `ask`: `discord_ask` questions and their answers.
//! - `read`: `discord_read` and `discord_channels`: reading Discord for the model's tools.
//! - `inbound`: replies in a session's thread: screening, journaling, hand-over, acks, catch-up.
//! - `controls`: the run card's Stop / Retry / Continue buttons.
//! - `slash`: the `/omp` command; `headless`: `/omp ask` runs in a project.
//! - `typing`: the bot's typing indicator while a run asked from Discord goes.
//! - `gateway`: the one gateway connection, and dispatching its events to the features.
//! - `interaction`: answers to clicks, modals and commands, as twilight-model's `InteractionResponse`.
//! - `access`: who may drive sessions (allowed users and roles, the application's owner).
//! - `spool`: reports extensions left on disk while no sidecar ran.
//! - `status`: counters and the sidecar's self-report.

mod access;
mod approval;
mod ask;
mod connection;
mod controls;
mod delivery;
pub mod gateway;
mod headless;
mod hold;
mod inbound;
mod intake;
mod interaction;
mod read;
mod slash;
pub mod socket;
mod spool;
mod status;
mod thread;
mod typing;

use std::sync::{Arc, Mutex as SyncMutex};

use omp_discord_core::format::project_name;
use tokio_util::sync::CancellationToken;
use twilight_model::id::Id;

use crate::config::Config;
use crate::discord::Discord;
use crate::store::{Outbox, OutboxError};

pub use access::{Access, learn_owner};
pub use connection::{exit_when_idle, run};
pub use delivery::deliver;

/// The running sidecar: each feature's state, wired together.
#[derive(Debug)]
pub struct Sidecar {
    config: Config,
    /// The bot's client, when a token is configured.
    discord: Option<Discord>,
    /// The webhook-only mode's client (no token, a webhook URL): posts and edits only.
    webhook: Option<Discord>,
    /// The journal, sessions and decisions (one SQLite connection).
    outbox: SyncMutex<Outbox>,
    counters: status::Counters,
    delivery: delivery::Delivery,
    holds: hold::Holds,
    access: access::Allowlist,
    approvals: approval::Approvals,
    asks: ask::Asks,
    inbound: inbound::Replies,
    spool: spool::Spool,
    typing: typing::Typing,
    launches: headless::Launches,
    forums: thread::Forums,
    /// The gateway connection's state, for status.
    pub gateway_state: SyncMutex<gateway::GatewayState>,
    /// The close code that ended the gateway for good, if one did.
    gateway_close: SyncMutex<Option<u16>>,
    /// The bot's own user id (from READY): its messages in Discord are the journal's.
    bot_user: SyncMutex<Option<Id<twilight_model::id::marker::UserMarker>>>,
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
        let inbound = inbound::Replies::new(config.inbound_rate_limit);
        Arc::new(Self {
            config,
            discord,
            webhook,
            outbox: SyncMutex::new(outbox),
            counters: status::Counters::default(),
            delivery: delivery::Delivery::default(),
            holds: hold::Holds::default(),
            access: access::Allowlist::new(access.users, access.roles),
            approvals: approval::Approvals::new(access.approvals),
            asks: ask::Asks::default(),
            inbound,
            spool: spool::Spool::default(),
            typing: typing::Typing::default(),
            launches: headless::Launches::default(),
            forums: thread::Forums::default(),
            gateway_state: SyncMutex::new(gateway::GatewayState::Off),
            gateway_close: SyncMutex::new(None),
            bot_user: SyncMutex::new(None),
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

    /// Runs `f` on the store, under its lock.
    fn with_outbox<T>(&self, f: impl FnOnce(&mut Outbox) -> Result<T, OutboxError>) -> Result<T, OutboxError> {
        let mut outbox = self.outbox.lock().expect("no code panics while holding the outbox");
        f(&mut outbox)
    }
}

/// A Discord id from its decimal text (as stored), if it is one.
fn parse_id<T>(raw: &str) -> Option<Id<T>> {
    raw.parse().ok().and_then(Id::new_checked)
}

/// Milliseconds since the Unix epoch, as the journal stores times.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}
