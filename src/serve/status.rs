//! `status`: what the sidecar reports about itself (the CLI, `/metrics`, the shim).

use super::{Sidecar, now_ms};
use omp_discord_core::embed::{Level, Notification, build_notification};
use omp_discord_core::format::project_name;
use omp_discord_core::protocol::PROTOCOL_VERSION;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::Mutex;

/// What the sidecar counts about itself.
#[derive(Debug)]
pub(super) struct Counters {
    pub(super) started: Instant,
    /// Connected clients.
    pub(super) clients: AtomicUsize,
    /// Requests being answered and notifications waiting for their outcome.
    pub(super) in_flight: AtomicUsize,
    pub(super) delivered: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) last_error: Mutex<Option<String>>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            clients: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }
}

impl Sidecar {
    /// Says something about the sidecar itself in the home channel, once,
    /// straight to Discord (not journaled: it is about Discord refusing or
    /// closing, which would hold the journal too). Needs a bot.
    pub(super) async fn say_in_home_channel(&self, title: &str, text: &str, level: Level) {
        let (Some(discord), Some(home)) = (&self.discord, self.config.home_channel) else { return };
        let note =
            Notification { title: Some(title.to_owned()), message: text.to_owned(), level, ..Default::default() };
        // A one-off message: nothing retries it under this nonce.
        let nonce = super::intake::fresh_nonce("sidecar", title);
        if let Err(err) = discord.create_message(home, &build_notification(&note, ""), nonce).await {
            tracing::warn!(error = %err, title, "could not say it in the home channel");
        }
    }

    /// Idle means empty: no client attached, no request in flight, no
    /// question or approval waiting, and nothing left to deliver (while
    /// Discord is down, accepted messages keep the sidecar up until they are
    /// sent). Rows it could never send (no Discord client) do not count.
    pub(super) fn is_idle(&self) -> bool {
        let quiet = self.counters.clients.load(Ordering::SeqCst) == 0
            && self.counters.in_flight.load(Ordering::SeqCst) == 0
            && self.approvals.waiters.lock().expect("approval waiters lock").is_empty()
            && self.asks.waiters.lock().expect("ask waiters lock").is_empty();
        quiet
            && (self.client().is_none()
                || self.with_outbox(|o| o.pending_destinations()).is_ok_and(|pending| pending.is_empty()))
    }

    /// The sidecar's state, for `status` and the metrics endpoint.
    pub async fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "commit": env!("OMP_DISCORD_COMMIT"),
            "protocol": PROTOCOL_VERSION,
            "pid": std::process::id(),
            "uptime_secs": self.counters.started.elapsed().as_secs(),
            "socket": self.config.socket.display().to_string(),
            "token_configured": self.config.token.is_some(),
            "mode": if self.discord.is_some() { "bot" } else if self.webhook.is_some() { "webhook" } else { "unconfigured" },
            "home_channel_id": self.config.home_channel.map(|id| id.to_string()),
            "projects": self.config.projects.iter().map(|p| serde_json::json!({
                "path": p.path(),
                "channel_id": p.channel.map(|c| c.to_string()),
                "dirs": crate::config::project_dirs(p).len(),
            })).collect::<Vec<_>>(),
            "clients": self.counters.clients.load(Ordering::SeqCst),
            "in_flight": self.counters.in_flight.load(Ordering::SeqCst),
            "delivered": self.counters.delivered.load(Ordering::SeqCst),
            "failed": self.counters.failed.load(Ordering::SeqCst),
            "last_error": self.counters.last_error.lock().await.clone(),
            "queue": self.with_outbox(|outbox| outbox.stats()).ok().map(|stats| serde_json::json!({
                "depth": stats.pending,
                "oldest_age_secs": stats.oldest_pending_ms.map(|created| (now_ms() - created).max(0) / 1000),
            })),
            "config_file": self.config.file.as_ref().map(|path| path.display().to_string()),
            "config_warnings": self.config.warnings,
            "api": self.config.api.origin(),
            "outbox": self.with_outbox(|outbox| outbox.stats()).ok(),
            "state_file": self.with_outbox(|outbox| outbox.size()).ok().map(|(bytes, free)| serde_json::json!({
                "bytes": bytes,
                "free_bytes": free,
            })),
            "threads": self.config.threads,
            "gateway": *self.gateway_state.lock().expect("gateway state lock"),
            "held": self.holds.report(),
            "gateway_close": self.gateway_close.lock().expect("gateway close lock").map(|code| serde_json::json!({
                "code": code,
                "advice": omp_discord_core::gateway::fatal_close_advice(code),
            })),
            "rate_limits": match (&self.discord, &self.webhook) {
                (Some(discord), _) => Some(discord.headroom(self.config.home_channel).await),
                (None, Some(webhook)) => Some(webhook.headroom(None).await),
                (None, None) => None,
            },
            "attached_sessions": self.inbound.attached.lock().expect("attached lock").len(),
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
}
