//! The bot "is typing" in a session's thread while its agent works on
//! something asked from Discord. Discord shows the indicator for about 10 s
//! (or until the bot posts), so one timer per session re-sends it every 8 s
//! until the run's last report arrives, the session detaches, or a cap passes.
//! The same reports tell which sessions are running a run (for `/omp ask`,
//! which hands a prompt only to an idle session).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use omp_discord_core::embed::MessagePayload;
use omp_discord_core::templates::ends_run;
use tokio_util::sync::CancellationToken;
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;

use super::Sidecar;

/// How often the indicator is renewed (Discord shows it for about 10 s).
const EVERY: Duration = Duration::from_secs(8);
/// A run that never reports its end (a crashed OMP, a quiet report level)
/// stops showing typing after this long.
const CAP: Duration = Duration::from_secs(10 * 60);

/// The running timers, by session id, and the sessions running a run.
#[derive(Debug, Default)]
pub struct Typing {
    timers: SyncMutex<HashMap<String, Timer>>,
    next: std::sync::atomic::AtomicU64,
    running: SyncMutex<HashSet<String>>,
}

#[derive(Debug)]
struct Timer {
    generation: u64,
    stop: CancellationToken,
}

impl Typing {
    /// Follows a session's reports: a run card's first post starts a run,
    /// the run's last report ends it (and its typing).
    pub fn observe(&self, session_id: &str, key: Option<&str>, edit: bool, payload: &MessagePayload) {
        if ends_run(payload) {
            self.running.lock().expect("running lock").remove(session_id);
            self.stop(session_id);
        } else if !edit && key.is_some_and(|k| k.starts_with("card:")) {
            self.running.lock().expect("running lock").insert(session_id.to_owned());
        }
    }

    /// Whether the session's agent is known to be working on a run.
    pub fn is_running(&self, session_id: &str) -> bool {
        self.running.lock().expect("running lock").contains(session_id)
    }

    /// The session's connection went away: nothing of it runs here any more.
    pub fn detached(&self, session_id: &str) {
        self.running.lock().expect("running lock").remove(session_id);
        self.stop(session_id);
    }

    /// Stops the timer of `session_id`, if it has one.
    pub fn stop(&self, session_id: &str) {
        if let Some(timer) = self.timers.lock().expect("typing lock").remove(session_id) {
            timer.stop.cancel();
        }
    }

    /// How many sessions show typing now.
    pub fn active(&self) -> usize {
        self.timers.lock().expect("typing lock").len()
    }
}

impl Sidecar {
    /// Shows typing in `thread` for `session_id` from now until
    /// [`Typing::stop`], renewing it; a timer already running for the session
    /// is replaced (and its cap restarts).
    pub(super) fn start_typing(self: &Arc<Self>, session_id: &str, thread: Id<ChannelMarker>) {
        if self.discord.is_none() {
            return;
        }
        let generation = self.typing.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stop = self.shutdown.child_token();
        let previous = self
            .typing
            .timers
            .lock()
            .expect("typing lock")
            .insert(session_id.to_owned(), Timer { generation, stop: stop.clone() });
        if let Some(previous) = previous {
            previous.stop.cancel();
        }
        let sidecar = self.clone();
        let session_id = session_id.to_owned();
        tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            while started.elapsed() < CAP {
                if let Some(discord) = &sidecar.discord
                    && let Err(err) = discord.typing(thread).await
                {
                    tracing::debug!(thread_id = %thread, error = %err, "could not show typing");
                }
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(EVERY) => {}
                }
            }
            tracing::debug!(session_id, "typing stopped at its cap; the run's end was never reported");
            let mut timers = sidecar.typing.timers.lock().expect("typing lock");
            if timers.get(&session_id).is_some_and(|t| t.generation == generation) {
                timers.remove(&session_id);
            }
        });
    }
}
