//! The one gateway connection: twilight-gateway with a single shard and the
//! fewest intents inbound replies need. twilight resumes after drops by itself;
//! this loop hands each message to the sidecar and stops on a fatal close.

use std::sync::Arc;

use twilight_gateway::{CloseFrame, Event, EventTypeFlags, StreamExt};

use super::Sidecar;
use super::interaction::private;
use crate::config::Token;
use omp_discord_core::approval::parse_custom_id;
use omp_discord_core::embed::Level;
use omp_discord_core::gateway::fatal_close_advice;
use omp_discord_core::inbound::{Admission, interaction_limited_note};
use omp_discord_core::protocol::ServerFrame;
use twilight_model::application::interaction::{Interaction, InteractionData, InteractionType};

/// The gateway connection's state, as `status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayState {
    /// No gateway (webhook-only mode, or not started yet).
    Off,
    /// Connected and READY (or RESUMED).
    Ready,
    /// Closed for good (a fatal close code, or shutdown).
    Closed,
}

/// Runs the gateway until shutdown or a fatal close (bad token, disallowed intents).
pub async fn run(sidecar: Arc<Sidecar>, token: Token, proxy_url: Option<String>) {
    let mut shard = crate::discord::gateway::shard(&token, proxy_url);
    let wanted = EventTypeFlags::READY
        | EventTypeFlags::RESUMED
        | EventTypeFlags::MESSAGE_CREATE
        | EventTypeFlags::INTERACTION_CREATE
        // What can grant a permission a held destination lacks.
        | EventTypeFlags::CHANNEL_UPDATE
        | EventTypeFlags::THREAD_UPDATE
        | EventTypeFlags::ROLE_CREATE
        | EventTypeFlags::ROLE_UPDATE
        | EventTypeFlags::GUILD_UPDATE;
    let mut fatal_close = None;
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
                *sidecar.gateway_state.lock().expect("gateway state lock") = GatewayState::Closed;
                match fatal_close {
                    Some((code, advice)) => {
                        tracing::error!(code, advice, "the gateway closed for good");
                        *sidecar.gateway_close.lock().expect("gateway close lock") = Some(code);
                        sidecar.say_gateway_closed(advice).await;
                        sidecar.tell_attached_sessions().await;
                    }
                    None => {
                        tracing::error!("the gateway closed for good; inbound replies stop until the sidecar restarts")
                    }
                }
                break;
            }
            Some(Ok(Event::GatewayClose(Some(frame)))) => {
                // Remembered: the stream ends right after a fatal close, without its code.
                fatal_close = fatal_close_advice(frame.code).map(|advice| (frame.code, advice));
            }
            Some(Ok(Event::Ready(ready))) => {
                tracing::info!(session_id = %ready.session_id, guilds = ready.guilds.len(), "gateway ready");
                *sidecar.bot_user.lock().expect("bot user lock") = Some(ready.user.id);
                *sidecar.gateway_state.lock().expect("gateway state lock") = GatewayState::Ready;
                let guilds = ready.guilds.iter().map(|g| g.id).collect();
                tokio::spawn(super::slash::register(sidecar.clone(), ready.application.id, guilds));
                // A new gateway session replays nothing: read what was missed before
                // taking further events, so each session's replies stay in order.
                sidecar.backfill().await;
            }
            Some(Ok(Event::Resumed)) => {
                tracing::info!("gateway resumed");
                *sidecar.gateway_state.lock().expect("gateway state lock") = GatewayState::Ready;
            }
            Some(Ok(Event::MessageCreate(message))) => sidecar.on_discord_message(&message).await,
            Some(Ok(
                Event::ChannelUpdate(_)
                | Event::ThreadUpdate(_)
                | Event::RoleCreate(_)
                | Event::RoleUpdate(_)
                | Event::GuildUpdate(_),
            )) => sidecar.holds.configuration_changed(),
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

/// Odd data in the events the sidecar takes from the gateway (anyone in the
/// server shapes a message; a proxy or a Discord change may shape the rest):
/// parsing never panics, an event that does not parse is an error the loop
/// logs and skips, and a message that parses goes through inbound cleaning.
impl Sidecar {
    /// Says once in the home channel that replies from Discord stopped, and
    /// why (if the token still works: after a 4004 it does not).
    async fn say_gateway_closed(&self, advice: &str) {
        self.say_in_home_channel("omp-discord stopped listening to Discord", advice, Level::Error).await;
    }

    /// What an OMP session hears when the gateway closed for good.
    pub(super) fn gateway_closed_notice(&self) -> Option<String> {
        let code = (*self.gateway_close.lock().expect("gateway close lock"))?;
        let advice = fatal_close_advice(code)?;
        Some(format!("replies, approvals and questions from Discord stopped: {advice}"))
    }

    /// Tells every attached session, once, that the gateway closed for good.
    async fn tell_attached_sessions(&self) {
        let Some(text) = self.gateway_closed_notice() else { return };
        let attached: Vec<_> = self
            .inbound
            .attached
            .lock()
            .expect("attached lock")
            .iter()
            .map(|(s, tx)| (s.clone(), tx.clone()))
            .collect();
        for (session_id, tx) in attached {
            let _ = tx.send(ServerFrame::Notice { session_id, text: text.clone() }).await;
        }
    }

    /// Whether `interaction` is within its author's rate (the budget their
    /// replies use too): clicks, modals and commands each take one, so nobody
    /// starts `omp` runs or flips buttons in a loop. Over it, the author is
    /// told privately and nothing is done. Autocomplete is free: typing asks
    /// Discord for choices many times.
    async fn admit_interaction(&self, interaction: &Interaction) -> bool {
        if interaction.kind == InteractionType::ApplicationCommandAutocomplete {
            return true;
        }
        let (Some(limiter), Some(author)) = (&self.inbound.limiter, interaction.author_id()) else { return true };
        let admission = limiter
            .lock()
            .expect("limiter lock")
            .admit(&author.to_string(), super::inbound::written_ms(interaction.id));
        let Admission::Refuse { retry_after_ms, .. } = admission else { return true };
        tracing::info!(audit = true, user_id = %author, "interaction refused: the author is over the inbound rate limit");
        let limit = limiter.lock().expect("limiter lock").limit();
        self.respond(interaction, &private(&interaction_limited_note(limit, retry_after_ms)), "rate limit").await;
        false
    }

    /// An interaction from the gateway, handed to the feature it belongs to:
    /// run controls, the `/omp` command, a question's answer, an approval.
    pub async fn on_interaction(&self, interaction: &Interaction) {
        if !self.admit_interaction(interaction).await {
            return;
        }
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
        if let Some((decision, id)) = parse_custom_id(&data.custom_id) {
            self.on_approval_click(interaction, decision, id).await;
        }
    }
}

#[cfg(test)]
mod properties {
    use omp_discord_core::inbound::prepare_inbound;
    use omp_discord_emulator::{DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, EmulatorConfig, EmulatorState};
    use proptest::prelude::*;
    use serde_json::{Value, json};
    use twilight_gateway::{Event, EventTypeFlags};
    use twilight_model::gateway::event::GatewayEvent;

    const WANTED: EventTypeFlags = EventTypeFlags::MESSAGE_CREATE.union(EventTypeFlags::INTERACTION_CREATE);

    /// A MESSAGE_CREATE as the emulator dispatches it, and a button click's INTERACTION_CREATE.
    fn real_events() -> Vec<Value> {
        let state = EmulatorState::new(EmulatorConfig::default());
        let message = state
            .inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({ "content": "run the tests" }))
            .expect("the emulator takes a message");
        let interaction = json!({
            "id": "1100000000000009001", "application_id": "1100000000000000100", "type": 3,
            "token": "interaction-token", "version": 1, "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(),
            "guild_id": "1100000000000000001", "locale": "en-US",
            "member": { "user": { "id": DEFAULT_OWNER_USER_ID.to_string(), "username": "owner", "discriminator": "0",
                                  "avatar": null },
                        "roles": [], "joined_at": "2024-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false,
                        "flags": 0, "permissions": "0" },
            "data": { "custom_id": "omp:approve:7", "component_type": 2 },
            "message": message.clone(), "app_permissions": "0", "attachment_size_limit": 10_485_760,
            "context": 0, "entitlements": [], "authorizing_integration_owners": {}
        });
        [("MESSAGE_CREATE", message), ("INTERACTION_CREATE", interaction)]
            .into_iter()
            .map(|(t, d)| json!({ "op": 0, "s": 42, "t": t, "d": d }))
            .collect()
    }

    fn parse(event: &Value) -> Result<Option<GatewayEvent>, twilight_gateway::error::ReceiveMessageError> {
        twilight_gateway::parse(event.to_string(), WANTED)
    }

    /// Replaces the value at a random path (or removes it) with a value of another type.
    fn mutate(value: &mut Value, path: &[prop::sample::Index], replacement: Option<Value>) {
        let Some((step, rest)) = path.split_first() else { return };
        match value {
            Value::Object(map) if !map.is_empty() => {
                let key = map.keys().nth(step.index(map.len())).cloned().expect("in range");
                if rest.is_empty() || !matches!(map[&key], Value::Object(_) | Value::Array(_)) {
                    match replacement {
                        Some(new) => map.insert(key, new),
                        None => map.remove(&key),
                    };
                } else {
                    mutate(map.get_mut(&key).expect("present"), rest, replacement);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                let at = step.index(items.len());
                mutate(&mut items[at], rest, replacement);
            }
            other => *other = replacement.unwrap_or(Value::Null),
        }
    }

    fn odd_value() -> impl Strategy<Value = Option<Value>> {
        prop_oneof![
            Just(None),
            Just(Some(Value::Null)),
            any::<i64>().prop_map(|n| Some(json!(n))),
            any::<f64>().prop_map(|n| Some(json!(n))),
            any::<bool>().prop_map(|b| Some(json!(b))),
            any::<String>().prop_map(|s| Some(json!(s))),
            Just(Some(json!("18446744073709551616"))),
            Just(Some(json!([]))),
            Just(Some(json!({}))),
        ]
    }

    #[test]
    fn the_unmutated_events_parse() {
        for event in real_events() {
            let parsed = parse(&event).unwrap_or_else(|e| panic!("{e}: {event}"));
            assert!(matches!(parsed, Some(GatewayEvent::Dispatch(42, _))), "{event}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn odd_gateway_events_parse_or_fail_without_panicking(
            which in 0usize..2,
            mutations in prop::collection::vec((prop::collection::vec(any::<prop::sample::Index>(), 1..5), odd_value()), 1..4),
            content in any::<String>(),
            name in any::<String>(),
        ) {
            let mut event = real_events().swap_remove(which);
            if which == 0 {
                event["d"]["content"] = json!(content);
                event["d"]["author"]["username"] = json!(name);
            }
            for (path, replacement) in mutations {
                mutate(&mut event["d"], &path, replacement);
            }
            if let Ok(Some(GatewayEvent::Dispatch(_, event))) = parse(&event)
                && let Event::MessageCreate(message) = Event::from(event)
            {
                let _ = prepare_inbound(&message.author.name, &message.content);
            }
        }
    }
}
