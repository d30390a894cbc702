//! Builders cut and mark text at Discord's limits, redact secrets, never ping, coalesce in
//! order; the validator names the part and the limit it breaks.

use super::*;

fn note(message: String) -> Notification {
    Notification { message, ..Default::default() }
}

#[test]
fn description_at_the_limit_is_kept_whole() {
    let text = "é".repeat(limits::DESCRIPTION);
    let payload = build_notification(&note(text.clone()), "p");
    assert_eq!(payload.embeds[0].description.as_deref(), Some(text.as_str()));
    validate_message(&payload).unwrap();
}

#[test]
fn one_past_the_limit_is_cut_and_marked() {
    let text = "é".repeat(limits::DESCRIPTION + 1);
    let payload = build_notification(&note(text), "p");
    let description = payload.embeds[0].description.as_deref().unwrap();
    assert_eq!(description.chars().count(), limits::DESCRIPTION);
    assert!(description.ends_with(TRUNCATION_MARKER));
    validate_message(&payload).unwrap();
}

#[test]
fn total_embed_text_is_kept_under_6000() {
    let n = Notification {
        title: Some("t".repeat(300)),
        message: "m".repeat(5000),
        level: Level::Warning,
        fields: (0..30)
            .map(|i| NotifyField { name: format!("f{i}"), value: "v".repeat(1100), inline: false })
            .collect(),
    };
    let payload = build_notification(&n, "p");
    validate_message(&payload).unwrap();
    let embed = &payload.embeds[0];
    assert!(embed.description.as_deref().unwrap().chars().count() >= DESCRIPTION_SHARE);
    let omitted = limits::FIELDS - embed.fields.len();
    assert!(omitted > 0);
    let footer = &embed.footer.as_ref().unwrap().text;
    assert!(footer.ends_with(&format!("{omitted} fields omitted")), "{footer}");
}

#[test]
fn validator_names_the_part_and_limit() {
    let mut payload = build_notification(&note("x".into()), "p");
    payload.embeds[0].title = Some("t".repeat(257));
    let err = validate_message(&payload).unwrap_err();
    assert_eq!(err.to_string(), "the embed 1 title is 257 characters long, but the max is 256");
}

#[test]
fn empty_message_is_refused() {
    let payload = MessagePayload {
        content: Some("  ".into()),
        embeds: vec![],
        allowed_mentions: Default::default(),
        components: vec![],
        files: vec![],
    };
    assert_eq!(validate_message(&payload), Err(EmbedError::Empty));
}

#[test]
fn mass_mentions_never_ping() {
    let payload = build_notification(&note("hey @everyone and @here".into()), "p");
    let json = serde_json::to_value(&payload).unwrap();
    assert_eq!(json["allowed_mentions"], serde_json::json!({ "parse": [] }));
    let description = payload.embeds[0].description.as_deref().unwrap();
    assert!(!description.contains("@everyone") && !description.contains("@here"));
}

#[test]
fn secrets_are_redacted_in_every_part() {
    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
    let n = Notification {
        title: Some(secret.into()),
        message: format!("token {secret}"),
        level: Level::Info,
        fields: vec![NotifyField { name: secret.into(), value: secret.into(), inline: true }],
    };
    let json = serde_json::to_string(&build_notification(&n, secret)).unwrap();
    assert!(!json.contains(secret), "{json}");
}

#[test]
fn redact_payload_cleans_a_raw_client_payload() {
    let secret = "sk-ant-abcdefghijklmnopqrstuvwxyz0123456789"; // fake, made-up token
    let mut payload: MessagePayload = serde_json::from_value(serde_json::json!({
        "content": format!("@everyone {secret}"),
        "embeds": [{ "type": "rich", "title": secret, "fields": [{ "name": "k", "value": secret, "inline": false }] }],
        "allowed_mentions": { "parse": ["everyone", "users"] }
    }))
    .unwrap();
    redact_payload(&mut payload);
    let json = serde_json::to_string(&payload).unwrap();
    assert!(!json.contains(secret) && !json.contains("@everyone"), "{json}");
    assert_eq!(payload.allowed_mentions, AllowedMentions::default());
}

#[test]
fn coalesce_packs_embeds_in_order_within_limits() {
    let small = |i: usize| build_notification(&note(format!("note {i}")), "p");
    let queue: Vec<MessagePayload> = (0..14).map(small).collect();
    let (merged, taken) = coalesce(&queue).unwrap();
    assert_eq!(taken, limits::EMBEDS);
    let descriptions: Vec<_> = merged.embeds.iter().map(|e| e.description.clone().unwrap()).collect();
    assert_eq!(descriptions, (0..10).map(|i| format!("note {i}")).collect::<Vec<_>>());
    validate_message(&merged).unwrap();
    let (rest, taken) = coalesce(&queue[10..]).unwrap();
    assert_eq!((rest.embeds.len(), taken), (4, 4));
}

#[test]
fn coalesce_respects_the_total_and_content() {
    let big = build_notification(&note("x".repeat(3500)), "p");
    let (merged, taken) = coalesce(&[big.clone(), big.clone()]).unwrap();
    assert_eq!(taken, 1, "two 3500-character embeds exceed 6000");
    validate_message(&merged).unwrap();
    let text = MessagePayload {
        content: Some("hi".into()),
        embeds: vec![],
        allowed_mentions: Default::default(),
        components: vec![],
        files: vec![],
    };
    assert_eq!(coalesce(&[text.clone(), big.clone()]).unwrap().1, 1);
    assert_eq!(coalesce(&[big, text]).unwrap().1, 1);
    assert!(coalesce(&[]).is_none());
}

#[test]
fn errors_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<EmbedError>();
}

#[test]
fn a_message_is_recognised_as_the_posting_of_its_payload_and_nothing_else() {
    let note = |text: &str| build_notification(&Notification { message: text.into(), ..Default::default() }, "proj");
    let sent = note("deploy finished");
    let mut shown = sent.embeds.clone();
    shown[0].kind = "rich".into();
    // Discord trims; what it adds to an embed does not matter.
    shown[0].description = shown[0].description.as_ref().map(|d| format!("{d}\n"));
    assert!(posted_as(&sent, "", &shown));
    assert!(!posted_as(&sent, "", &note("deploy failed").embeds));
    assert!(!posted_as(&sent, "extra text", &shown));
    assert!(!posted_as(&sent, "", &[]));
    let mut two = sent.clone();
    two.embeds.push(note("second").embeds[0].clone());
    assert!(!posted_as(&two, "", &shown));
}
