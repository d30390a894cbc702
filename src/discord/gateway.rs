//! The gateway: the intents every connection asks for (the sidecar's and
//! setup's), the shard built with them, and [`Waiter`], a connection for
//! waits with a deadline (setup waits on it for the bot to join a server and
//! for a typed code).

use std::time::Instant;

use serde_json::Value;
use twilight_gateway::{CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt};
use twilight_model::oauth::ApplicationFlags;

use crate::config::Token;

/// Guilds (to know channels), guild messages and their content: nothing else.
pub const INTENTS: Intents = Intents::GUILDS.union(Intents::GUILD_MESSAGES).union(Intents::MESSAGE_CONTENT);

/// Whether `application` (GET /oauth2/applications/@me) may use the
/// privileged Message Content intent of [`INTENTS`]: without it, replies
/// arrive empty.
pub fn message_content_allowed(application: &Value) -> bool {
    let allowed = ApplicationFlags::GATEWAY_MESSAGE_CONTENT | ApplicationFlags::GATEWAY_MESSAGE_CONTENT_LIMITED;
    application["flags"].as_u64().unwrap_or(0) & allowed.bits() != 0
}

/// The one shard a process needs, with [`INTENTS`], for `token`; it
/// connects to `proxy_url` instead of Discord's gateway when given (an
/// emulator's). It connects lazily, on the first `next_event`.
pub fn shard(token: &Token, proxy_url: Option<String>) -> Shard {
    let mut config = ConfigBuilder::new(token.expose().to_owned(), INTENTS);
    if let Some(url) = proxy_url {
        config = config.proxy_url(url);
    }
    Shard::with_config(ShardId::ONE, config.build())
}

/// Why a [`Waiter`] cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The connection closed for good (a bad token, or intents the application may not use).
    #[error("the gateway connection closed")]
    Closed,
    /// READY did not arrive before the deadline.
    #[error("the gateway connection did not become ready")]
    NotReady,
}

/// One gateway connection (one shard, [`INTENTS`]) for waits with a deadline.
pub struct Waiter {
    shard: Shard,
    /// Whether READY arrived: only then are new messages dispatched to this connection.
    ready: bool,
}

impl Waiter {
    /// Connects with `token`, to `proxy_url` instead of Discord's gateway when given (an emulator's).
    pub fn connect(token: &Token, proxy_url: Option<String>) -> Self {
        Self { shard: shard(token, proxy_url), ready: false }
    }

    /// The next event of `wanted` before `deadline`, or `None` when the time is up.
    ///
    /// # Errors
    ///
    /// [`WaitError::Closed`] when the connection closed for good.
    pub async fn next(&mut self, wanted: EventTypeFlags, deadline: Instant) -> Result<Option<Event>, WaitError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.shard.next_event(wanted | EventTypeFlags::READY)).await {
                Err(_) => return Ok(None),
                Ok(Some(Ok(Event::Ready(_)))) if !wanted.contains(EventTypeFlags::READY) => self.ready = true,
                Ok(None) => return Err(WaitError::Closed),
                Ok(Some(Ok(event))) => return Ok(Some(event)),
                Ok(Some(Err(err))) => tracing::debug!(error = %err, "gateway event could not be read"),
            }
        }
    }

    /// Waits for READY. The shard connects lazily: a message sent before READY would never reach it.
    ///
    /// # Errors
    ///
    /// [`WaitError::NotReady`] when READY does not arrive before `deadline`.
    pub async fn until_ready(&mut self, deadline: Instant) -> Result<(), WaitError> {
        while !self.ready {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.shard.next_event(EventTypeFlags::READY)).await {
                Ok(Some(Ok(Event::Ready(_)))) => self.ready = true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Err(WaitError::NotReady),
            }
        }
        Ok(())
    }

    /// Closes the connection normally.
    pub fn close(self) {
        self.shard.close(CloseFrame::NORMAL);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn message_content_is_allowed_by_either_flag() {
        assert!(message_content_allowed(&json!({"flags": 1 << 18})));
        assert!(message_content_allowed(&json!({"flags": (1 << 19) | 1})));
        assert!(!message_content_allowed(&json!({"flags": 1 << 17})));
        assert!(!message_content_allowed(&json!({})));
    }
}
