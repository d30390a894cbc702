//! Holds: a destination Discord refuses for missing access or permissions
//! (HTTP 403: 50001 Missing Access, 50013 Missing Permissions) is held, not
//! failed. Its rows stay journaled; the hold is said once (the log, `status`,
//! `doctor`, one line in the home channel); and the destination is tried
//! again after a pause that doubles up to a cap, or at once when the
//! server's configuration changes (a channel, role or member update from the
//! gateway). One request per pause, so a missing permission never spends
//! Discord's invalid-request budget in a loop.

use std::collections::HashMap;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use omp_discord_core::embed::Level;
use omp_discord_core::protocol::{ErrorCode, ServerFrame};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Sidecar, now_ms};

/// The first pause of a held destination, and the longest.
const FIRST_PAUSE: Duration = Duration::from_secs(60);
const MAX_PAUSE: Duration = Duration::from_secs(30 * 60);

/// One held destination.
#[derive(Debug, Clone)]
struct Hold {
    /// Discord's error code and message.
    code: u64,
    reason: String,
    since_ms: i64,
    pause: Duration,
    retry_at: Instant,
}

/// The held destinations.
#[derive(Debug, Default)]
pub(super) struct Holds {
    by_destination: SyncMutex<HashMap<String, Hold>>,
    /// Wakes held destinations when the server's configuration changed.
    changed: Notify,
}

impl Holds {
    /// When `destination` may be tried again, if it is held.
    fn retry_at(&self, destination: &str) -> Option<Instant> {
        self.by_destination.lock().expect("holds lock").get(destination).map(|hold| hold.retry_at)
    }

    /// The server's channels, roles or members changed: every held
    /// destination is tried again now (its pause keeps growing if it fails).
    pub(super) fn configuration_changed(&self) {
        let mut holds = self.by_destination.lock().expect("holds lock");
        if holds.is_empty() {
            return;
        }
        let now = Instant::now();
        for hold in holds.values_mut() {
            hold.retry_at = now;
        }
        tracing::info!(held = holds.len(), "the server's configuration changed; trying held destinations again");
        drop(holds);
        self.changed.notify_waiters();
    }

    /// The holds, for `status`.
    pub(super) fn report(&self) -> Vec<serde_json::Value> {
        let now = Instant::now();
        let mut held: Vec<_> = self
            .by_destination
            .lock()
            .expect("holds lock")
            .iter()
            .map(|(destination, hold)| {
                serde_json::json!({
                    "destination": destination,
                    "code": hold.code,
                    "reason": hold.reason,
                    "since_secs": (now_ms() - hold.since_ms).max(0) / 1000,
                    "retry_in_secs": hold.retry_at.saturating_duration_since(now).as_secs(),
                })
            })
            .collect();
        held.sort_by(|a, b| a["destination"].as_str().cmp(&b["destination"].as_str()));
        held
    }
}

/// Whether Discord's refusal means the bot lacks access or permissions there
/// (a setting someone can change), rather than a message it will never take.
pub(super) fn is_permission_refusal(status: u16, code: u64) -> bool {
    use crate::discord::codes::{MISSING_ACCESS, MISSING_PERMISSIONS};
    status == 403 || code == MISSING_ACCESS || code == MISSING_PERMISSIONS
}

impl Sidecar {
    /// Holds `destination` after Discord refused it (`code`, `message`):
    /// keeps its rows, tells every client waiting on them, and says it once
    /// per hold (not again while the refusals go on).
    pub(super) async fn hold(&self, destination: &str, code: u64, message: &str) {
        let first = {
            let mut holds = self.holds.by_destination.lock().expect("holds lock");
            let hold = holds.entry(destination.to_owned()).or_insert_with(|| Hold {
                code,
                reason: message.to_owned(),
                since_ms: now_ms(),
                pause: Duration::ZERO,
                retry_at: Instant::now(),
            });
            let first = hold.pause.is_zero();
            hold.pause = if first { FIRST_PAUSE } else { (hold.pause * 2).min(MAX_PAUSE) };
            hold.retry_at = Instant::now() + hold.pause;
            (hold.code, hold.reason) = (code, message.to_owned());
            first
        };
        let text = format!(
            "Discord refused posting to {destination} (code {code}: {message}); the bot lacks access or a \
             permission there. The message stays queued and is sent once the bot may post there (tried again when \
             the server's channels or roles change, else after a pause of up to 30 minutes); `omp-discord doctor` \
             checks the permissions."
        );
        *self.counters.last_error.lock().await = Some(text.clone());
        let waiting = self.with_outbox(|o| o.pending_requests(destination)).unwrap_or_default();
        for (seq, request_id) in waiting {
            let frame =
                ServerFrame::Error { id: Some(request_id), code: ErrorCode::DestinationHeld, message: text.clone() };
            self.report(seq, frame);
        }
        if first {
            tracing::warn!(
                destination,
                code,
                reason = message,
                "destination held: the bot lacks access or a permission"
            );
            self.say_held(destination, &text).await;
        } else {
            tracing::debug!(destination, code, "destination still refused; held longer");
        }
    }

    /// Whether `destination` is held.
    pub(super) fn is_held(&self, destination: &str) -> bool {
        self.holds.retry_at(destination).is_some()
    }

    /// A held destination took a message again: the hold ends.
    pub(super) fn release(&self, destination: &str) {
        if self.holds.by_destination.lock().expect("holds lock").remove(destination).is_some() {
            tracing::info!(destination, "held destination accepts messages again");
        }
    }

    /// Waits while `destination` is held (until its pause ends, the
    /// configuration changes, or shutdown). Returns at once when it is not held.
    pub(super) async fn rest_while_held(&self, destination: &str) {
        while let Some(retry_at) = self.holds.retry_at(destination) {
            if retry_at <= Instant::now() {
                return;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = self.holds.changed.notified() => {}
                () = tokio::time::sleep_until(retry_at) => return,
            }
        }
    }

    /// One line in the home channel, unless the home channel is what is held.
    async fn say_held(&self, destination: &str, text: &str) {
        let home = self.config.home_channel.map(|home| super::intake::Destination::Channel(home).to_string());
        if home.as_deref() != Some(destination) {
            self.say_in_home_channel("omp-discord cannot post somewhere", text, Level::Warning).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_refusals_someone_can_fix_in_discord_hold() {
        assert!(is_permission_refusal(403, 50013));
        assert!(is_permission_refusal(403, 50001));
        assert!(is_permission_refusal(403, 0));
        assert!(!is_permission_refusal(400, 50035));
        assert!(!is_permission_refusal(404, 10003));
    }
}
