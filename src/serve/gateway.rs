//! The one gateway connection: twilight-gateway with a single shard and the
//! fewest intents inbound replies need. twilight resumes after drops by itself;
//! this loop hands each message to the sidecar and stops on a fatal close.

use std::sync::Arc;

use twilight_gateway::{CloseFrame, ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt};

use super::Sidecar;
use crate::config::Token;

/// Guilds (to know channels), guild messages and their content: nothing else.
pub const INTENTS: Intents = Intents::GUILDS.union(Intents::GUILD_MESSAGES).union(Intents::MESSAGE_CONTENT);

/// Runs the gateway until shutdown or a fatal close (bad token, disallowed intents).
pub async fn run(sidecar: Arc<Sidecar>, token: Token, proxy_url: Option<String>) {
    let mut config = ConfigBuilder::new(token.expose().to_owned(), INTENTS);
    if let Some(url) = proxy_url {
        config = config.proxy_url(url);
    }
    let mut shard = Shard::with_config(ShardId::ONE, config.build());
    let wanted = EventTypeFlags::READY
        | EventTypeFlags::RESUMED
        | EventTypeFlags::MESSAGE_CREATE
        | EventTypeFlags::INTERACTION_CREATE;
    loop {
        let event = tokio::select! {
            () = sidecar.shutdown.cancelled() => {
                shard.close(CloseFrame::NORMAL);
                break;
            }
            event = shard.next_event(wanted) => event,
        };
        match event {
            None => {
                tracing::error!("the gateway closed for good; inbound replies stop until the sidecar restarts");
                *sidecar.gateway_state.lock().expect("gateway state lock") = "closed".into();
                break;
            }
            Some(Ok(Event::Ready(ready))) => {
                tracing::info!(session_id = %ready.session_id, guilds = ready.guilds.len(), "gateway ready");
                *sidecar.gateway_state.lock().expect("gateway state lock") = "ready".into();
                let guilds = ready.guilds.iter().map(|g| g.id).collect();
                tokio::spawn(super::slash::register(sidecar.clone(), ready.application.id, guilds));
                // A new gateway session replays nothing: read what was missed before
                // taking further events, so each session's replies stay in order.
                sidecar.backfill().await;
            }
            Some(Ok(Event::Resumed)) => {
                tracing::info!("gateway resumed");
                *sidecar.gateway_state.lock().expect("gateway state lock") = "ready".into();
            }
            Some(Ok(Event::MessageCreate(message))) => sidecar.on_discord_message(&message).await,
            Some(Ok(Event::InteractionCreate(interaction))) => {
                // Answered in its own task: the 3 s deadline must not wait behind other events.
                let sidecar = sidecar.clone();
                tokio::spawn(async move { sidecar.on_interaction(&interaction).await });
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => tracing::warn!(error = %err, "gateway event could not be read"),
        }
    }
}
