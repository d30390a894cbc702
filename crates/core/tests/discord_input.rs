//! Properties of what the sidecar makes of data from Discord, which anyone in
//! the server can shape: replies in a thread (`prepare_inbound`), button
//! `custom_id`s (approvals, questions) and slash command data. Odd input
//! never panics, is either refused or cleaned, and what the bridge itself
//! produced reads back exactly.
//!
//! Failing inputs proptest finds are kept in
//! `discord_input.proptest-regressions` and re-run first.

use omp_discord_core::approval::{self, Decision};
use omp_discord_core::ask;
use omp_discord_core::commands::{self, Invocation};
use omp_discord_core::inbound::{InboundRefusal, MAX_INBOUND_CHARS, prepare_inbound};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Text as people (and bots) write it: any Unicode, control characters,
/// mentions, markdown, and long runs.
fn discord_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[\\x00-\\x1f\\x7f a-z@#<>:*_`~|\\n\\t\\r\\u{200b}\\u{202e}é😀]{0,64}",
        ("[a-z ]{0,8}", 0usize..6000).prop_map(|(unit, n)| unit.repeat(n / unit.len().max(1))),
        Just("@everyone <@&1100000000000000201> <@1100000000000000101>".to_owned()),
    ]
}

/// JSON of any shape, to stand in for interaction `data` sent by a client we do not control.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![Just("omp".to_owned()), Just("ask".to_owned()), Just("prompt".to_owned()), any::<String>()]
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("options".to_owned()),
                    Just("value".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// A reply is refused (empty, too long) or reaches OMP attributed, without
    /// control characters other than newline and tab, and within the limit.
    #[test]
    fn replies_are_refused_or_cleaned(author in discord_text(), content in discord_text()) {
        let kept: String = content.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect();
        let kept = kept.trim();
        match prepare_inbound(&author, &content) {
            Ok(text) => {
                let (head, body) = text.split_once("]\n").expect("an attribution line");
                prop_assert!(head.starts_with("[Discord message from "));
                let name = &head["[Discord message from ".len()..];
                prop_assert!(name.chars().count() <= 64 && !name.chars().any(char::is_control), "{name:?}");
                prop_assert_eq!(body, kept);
                prop_assert!(body.chars().count() <= MAX_INBOUND_CHARS);
                prop_assert!(!body.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
            }
            Err(InboundRefusal::Empty) => prop_assert!(kept.is_empty()),
            Err(InboundRefusal::TooLong { chars, max }) => {
                prop_assert_eq!(max, MAX_INBOUND_CHARS);
                prop_assert_eq!(chars, kept.chars().count());
                prop_assert!(chars > max);
            }
            Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
        }
    }

    /// Any button id parses without panicking; ours read back exactly, and no
    /// id is both an approval and a question's answer.
    #[test]
    fn button_ids_read_back_and_odd_ones_are_ignored(
        odd in any::<String>(),
        id in "[0-9a-zA-Z:_-]{0,87}",
        ask_id in any::<i64>(),
        option in any::<usize>(),
    ) {
        let _ = approval::parse_custom_id(&odd);
        let _ = ask::parse_custom_id(&odd);
        for decision in [Decision::Approve, Decision::Deny, Decision::AlwaysAllow] {
            let custom_id = approval::custom_id(decision, &id);
            prop_assert!(custom_id.len() <= 100, "Discord's custom_id limit");
            prop_assert_eq!(approval::parse_custom_id(&custom_id), Some((decision, id.as_str())));
            prop_assert_eq!(ask::parse_custom_id(&custom_id), None);
        }
        let answer = ask::custom_id(ask_id, option);
        prop_assert_eq!(ask::parse_custom_id(&answer), Some((ask_id, option)));
        prop_assert_eq!(approval::parse_custom_id(&answer), None);
    }

    /// Slash command data of any shape is read without panicking, and only an
    /// `/omp` command with a known subcommand and its required options counts.
    #[test]
    fn slash_command_data_of_any_shape_is_read_or_ignored(data in json_value()) {
        if let Some(invocation) = commands::parse(&data) {
            prop_assert_eq!(&data["name"], "omp");
            let sub = &data["options"][0];
            let expected = match &invocation {
                Invocation::Status => "status",
                Invocation::Sessions => "sessions",
                Invocation::Ask { .. } => "ask",
                Invocation::Abort { .. } => "abort",
                #[allow(unreachable_patterns)]
                _ => return Ok(()),
            };
            prop_assert_eq!(&sub["name"], expected);
        }
    }

    /// What Discord sends for our own command reads back as the invocation.
    #[test]
    fn real_slash_command_data_reads_back(
        prompt in any::<String>(),
        session in prop::option::of("[a-z0-9-]{1,36}"),
        project in prop::option::of("/[a-z0-9/_-]{1,60}"),
    ) {
        let mut options = vec![json!({"name": "prompt", "type": 3, "value": prompt})];
        if let Some(session) = &session {
            options.push(json!({"name": "session", "type": 3, "value": session}));
        }
        if let Some(project) = &project {
            options.push(json!({"name": "project", "type": 3, "value": project}));
        }
        let data = json!({"id": "1", "name": "omp", "type": 1, "options": [{"name": "ask", "type": 1, "options": options}]});
        prop_assert_eq!(commands::parse(&data), Some(Invocation::Ask { prompt, session, project }));
    }
}
