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
