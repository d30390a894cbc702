//! Stock twilight-http against a served emulator.

use omp_discord_emulator::*;
use twilight_http::Client;
use twilight_model::id::Id;

fn client(emulator: &Emulator) -> Client {
    Client::builder().token(DEFAULT_BOT_TOKEN.to_owned()).proxy(emulator.addr().to_string(), true).build()
}

#[tokio::test]
async fn twilight_http_logs_in_and_posts() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = client(&emulator);
    let me = client.current_user().await.unwrap().model().await.unwrap();
    assert_eq!(me.id.get(), DEFAULT_BOT_USER_ID);
    let channel = Id::new(DEFAULT_HOME_CHANNEL_ID);
    let message = client.create_message(channel).content("hello from twilight").await.unwrap().model().await.unwrap();
    assert_eq!(message.content, "hello from twilight");
    assert_eq!(message.channel_id, channel);
    let fetched = client.message(channel, message.id).await.unwrap().model().await.unwrap();
    assert_eq!(fetched.id, message.id);
    let listed = client.channel_messages(channel).limit(10).await.unwrap().models().await.unwrap();
    assert_eq!(listed.len(), 1);
    let fetched_channel = client.channel(channel).await.unwrap().model().await.unwrap();
    assert_eq!(fetched_channel.name.as_deref(), Some("omp-sessions"));
    let app = client.current_user_application().await.unwrap().model().await.unwrap();
    assert_eq!(app.id.get(), DEFAULT_APPLICATION_ID);
    let requests = emulator.requests();
    assert!(requests.iter().all(|r| r.status == 200), "{requests:?}");
    emulator.shutdown().await;
}

mod gateway {
    use std::time::Duration;

    use omp_discord_emulator::*;
    use serde_json::json;
    use twilight_gateway::{ConfigBuilder, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt};

    const DEADLINE: Duration = Duration::from_secs(20);

    async fn next(shard: &mut Shard) -> Event {
        loop {
            let item = tokio::time::timeout(DEADLINE, shard.next_event(EventTypeFlags::all()))
                .await
                .expect("an event in time")
                .expect("the shard is open");
            match item {
                Ok(event) => return event,
                Err(error) => tracing_free_log(&error),
            }
        }
    }

    fn tracing_free_log(error: &dyn std::error::Error) {
        eprintln!("shard receive error: {error}");
    }

    async fn wait_for<T>(shard: &mut Shard, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        loop {
            let event = next(shard).await;
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    }

    #[tokio::test]
    async fn twilight_gateway_connects_receives_and_resumes() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
        let intents = Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT;
        let config =
            ConfigBuilder::new(DEFAULT_BOT_TOKEN.to_owned(), intents).proxy_url(emulator.gateway_url()).build();
        let mut shard = Shard::with_config(ShardId::ONE, config);
        let ready = wait_for(&mut shard, |e| match e {
            Event::Ready(ready) => Some(ready.user.id.get()),
            _ => None,
        })
        .await;
        assert_eq!(ready, DEFAULT_BOT_USER_ID);
        let guild = wait_for(&mut shard, |e| match e {
            Event::GuildCreate(guild) => Some(guild.id().get()),
            _ => None,
        })
        .await;
        assert_eq!(guild, DEFAULT_GUILD_ID);
        let state = emulator.state().clone();
        state.inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": "live"})).unwrap();
        let content = wait_for(&mut shard, |e| match e {
            Event::MessageCreate(m) => Some(m.content.clone()),
            _ => None,
        })
        .await;
        assert_eq!(content, "live");
        // Drop the connection, post while it is gone, and expect a RESUME with replay.
        state.set_faults(&json!({"gateway": {"action": "drop"}})).unwrap();
        state.inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": "missed"})).unwrap();
        let mut resumed = false;
        let content = wait_for(&mut shard, |e| match e {
            Event::Resumed => {
                resumed = true;
                None
            }
            Event::MessageCreate(m) => Some(m.content.clone()),
            _ => None,
        })
        .await;
        assert_eq!(content, "missed");
        if !resumed {
            wait_for(&mut shard, |e| matches!(e, Event::Resumed).then_some(())).await;
        }
        assert_eq!(state.identify_count(), 1, "twilight resumed instead of identifying again");
        emulator.shutdown().await;
    }
}
