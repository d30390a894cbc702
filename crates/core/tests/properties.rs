//! Properties that hostile or unlucky input must never break, checked with
//! proptest (cargo-fuzz needs a nightly toolchain, which these machines
//! cannot install): the socket frame decoder, redaction of planted secrets,
//! and the embed builder against an independent copy of Discord's limits.
//!
//! Failing inputs proptest finds are kept in
//! `properties.proptest-regressions` and re-run first on every run.

#[path = "fixtures/redaction/corpus.rs"]
mod corpus;

use omp_discord_core::embed::{MessagePayload, Notification, NotifyField, build_notification, coalesce};
use omp_discord_core::protocol::{
    ClientFrame, ErrorCode, FrameError, Hello, MAX_FRAME_BYTES, MAX_REQUEST_ID_BYTES, NotifyRequest, ServerFrame,
    SessionRef, decode_client_frame, decode_server_frame, encode_frame,
};
use omp_discord_core::redact::{Redactor, redact_text};
use omp_discord_core::templates::{self, ToolFailure};
use proptest::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// The socket frame decoder
// ---------------------------------------------------------------------------

/// Bytes that look like frames more often than uniform noise does.
fn frame_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"\"type\":".to_vec()),
        Just(b"\"hello\"".to_vec()),
        Just(b"\"notify\"".to_vec()),
        Just(b"\"status\"".to_vec()),
        Just(b"\"id\":".to_vec()),
        Just(b"\"protocol\":1".to_vec()),
        Just(b"\"session\":{\"id\":\"s\"}".to_vec()),
        Just(b"\"message\":{\"embeds\":[{\"title\":\"t\"}]}".to_vec()),
        Just(b",".to_vec()),
        Just(b":".to_vec()),
        Just(b"[".to_vec()),
        Just(b"]".to_vec()),
        Just(b"null".to_vec()),
        Just(b"1e999".to_vec()),
        Just(b"-0".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(b"\\ud800".to_vec()),
        Just(b"\n".to_vec()),
        Just(vec![0xff, 0xfe]),
        Just(vec![0xc3]),
        prop::collection::vec(any::<u8>(), 0..16),
        "[a-z0-9\" ]{0,12}".prop_map(String::into_bytes),
    ];
    prop::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-zA-Z0-9 _.-]{0,20}", 1 => any::<String>()]
}

fn request_id() -> impl Strategy<Value = String> {
    // Any text whose UTF-8 fits the id limit.
    any::<String>().prop_map(|s| {
        let mut id = String::new();
        for c in s.chars() {
            if id.len() + c.len_utf8() > MAX_REQUEST_ID_BYTES {
                break;
            }
            id.push(c);
        }
        id
    })
}

fn session() -> impl Strategy<Value = SessionRef> {
    (text(), prop::option::of(text()), prop::option::of(text())).prop_map(|(id, cwd, prompt)| SessionRef {
        id,
        cwd,
        prompt,
    })
}

/// JSON without floats (their text form is not the point here).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..4).prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn notification() -> impl Strategy<Value = Notification> {
    let field = (any::<String>(), any::<String>(), any::<bool>()).prop_map(|(name, value, inline)| NotifyField {
        name,
        value,
        inline,
    });
    (
        prop::option::of(any::<String>()),
        any::<String>(),
        prop::sample::select(vec![
            omp_discord_core::embed::Level::Info,
            omp_discord_core::embed::Level::Success,
            omp_discord_core::embed::Level::Warning,
            omp_discord_core::embed::Level::Error,
        ]),
        prop::collection::vec(field, 0..4),
    )
        .prop_map(|(title, message, level, fields)| Notification { title, message, level, fields })
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (any::<u32>(), text(), any::<u32>(), text())
            .prop_map(|(protocol, client, pid, host)| ClientFrame::Hello(Hello { protocol, client, pid, host })),
        (
            request_id(),
            session(),
            notification(),
            text(),
            prop::option::of(text()),
            any::<bool>(),
            prop::option::of(text())
        )
            .prop_map(|(id, session, note, project, key, edit, channel_id)| {
                ClientFrame::Notify(NotifyRequest {
                    id,
                    session,
                    message: build_notification(&note, &project),
                    key,
                    edit,
                    idempotency_key: None,
                    channel_id,
                })
            }),
        (request_id(), session()).prop_map(|(id, session)| ClientFrame::Attach { id, session }),
        (request_id(), text()).prop_map(|(id, message_id)| ClientFrame::InboundAck { id, message_id }),
        (request_id(), session(), text(), text(), json_value()).prop_map(|(id, session, tool_call_id, tool, input)| {
            ClientFrame::Approve { id, session, tool_call_id, tool, input }
        }),
        request_id().prop_map(|id| ClientFrame::Status { id }),
        request_id().prop_map(|id| ClientFrame::Shutdown { id }),
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    let code = prop::sample::select(vec![
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::HandshakeRequired,
        ErrorCode::ProtocolMismatch,
        ErrorCode::InvalidMessage,
        ErrorCode::NotConfigured,
        ErrorCode::DiscordRejected,
        ErrorCode::DiscordUnavailable,
        ErrorCode::UnknownChannel,
        ErrorCode::Forbidden,
    ]);
    prop_oneof![
        (any::<u32>(), text(), json_value(), json_value(), text(), text()).prop_map(
            |(protocol, version, report, approvals, host, spool)| ServerFrame::Welcome {
                protocol,
                version,
                report,
                approvals,
                host,
                spool
            }
        ),
        (request_id(), any::<i64>()).prop_map(|(id, seq)| ServerFrame::Accepted { id, seq }),
        (request_id(), text(), text()).prop_map(|(id, channel_id, message_id)| ServerFrame::Delivered {
            id,
            channel_id,
            message_id
        }),
        (request_id(), json_value()).prop_map(|(id, status)| ServerFrame::Status { id, status }),
        (request_id(), any::<bool>(), text()).prop_map(|(id, approved, reason)| ServerFrame::Decision {
            id,
            approved,
            reason
        }),
        (text(), text(), text(), any::<String>(), any::<bool>()).prop_map(
            |(session_id, message_id, author_id, text, steer)| ServerFrame::Inbound {
                session_id,
                message_id,
                author_id,
                text,
                deliver_as: if steer {
                    omp_discord_core::inbound::Delivery::Steer
                } else {
                    omp_discord_core::inbound::Delivery::FollowUp
                },
            }
        ),
        (prop::option::of(request_id()), code, any::<String>()).prop_map(|(id, code, message)| ServerFrame::Error {
            id,
            code,
            message
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// Whatever arrives on the socket, decoding returns a frame or an error.
    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_client_frame(&bytes);
        let _ = decode_server_frame(&bytes);
    }

    #[test]
    fn decoding_frame_like_bytes_never_panics(bytes in frame_like_bytes()) {
        if let Err(err) = decode_client_frame(&bytes) {
            // Every failure maps to one of the two wire codes a client can act on.
            prop_assert!(matches!(err.code(), ErrorCode::MalformedFrame | ErrorCode::FrameTooLarge));
        }
        let _ = decode_server_frame(&bytes);
    }

    #[test]
    fn client_frames_round_trip(frame in client_frame()) {
        let line = encode_frame(&frame);
        prop_assert!(line.ends_with('\n'));
        prop_assert_eq!(line.matches('\n').count(), 1, "one frame is one line: {:?}", line);
        prop_assert_eq!(decode_client_frame(line.as_bytes()).unwrap(), frame);
    }

    #[test]
    fn server_frames_round_trip(frame in server_frame()) {
        let line = encode_frame(&frame);
        prop_assert_eq!(line.matches('\n').count(), 1, "one frame is one line: {:?}", line);
        prop_assert_eq!(decode_server_frame(line.as_bytes()).unwrap(), frame);
    }

    /// A truncated frame is an error (never a different, shorter frame), and
    /// cutting it anywhere, even inside a UTF-8 sequence, cannot panic.
    #[test]
    fn truncated_frames_are_refused(frame in client_frame(), cut in any::<prop::sample::Index>()) {
        let line = encode_frame(&frame);
        // Without the newline and the closing brace at least.
        let body = &line.as_bytes()[..line.len() - 1];
        let cut = cut.index(body.len());
        let err = decode_client_frame(&body[..cut]).unwrap_err();
        prop_assert_eq!(err.code(), ErrorCode::MalformedFrame);
    }
}

#[test]
fn a_frame_one_byte_over_the_limit_is_too_large_and_one_at_it_is_read() {
    let pad = |len: usize| {
        let mut frame = br#"{"type":"status","id":"x","pad":""#.to_vec();
        let tail = br#""}"#;
        frame.resize(len - tail.len(), b'a');
        frame.extend(tail);
        frame
    };
    let at_limit = pad(MAX_FRAME_BYTES);
    assert!(matches!(decode_client_frame(&at_limit), Ok(ClientFrame::Status { .. })));
    let over = pad(MAX_FRAME_BYTES + 1);
    assert_eq!(
        decode_client_frame(&over).unwrap_err(),
        FrameError::TooLarge { bytes: MAX_FRAME_BYTES + 1, max: MAX_FRAME_BYTES }
    );
}

// ---------------------------------------------------------------------------
// Redaction of planted secrets
// ---------------------------------------------------------------------------

/// Text around a planted secret: anything, ended by a separator so the
/// random text cannot legitimately change where the secret ends (a letter
/// glued to a token makes a different, longer word). Dangling keys such as
/// `password=` only come after the secret, or before it with a line break:
/// `password= KEY: value` on one line reads as a password `KEY:` to a person
/// too.
fn surrounding() -> impl Strategy<Value = (String, String)> {
    let noise = prop_oneof![
        2 => any::<String>(),
        2 => "[ -~]{0,80}",
        1 => Just("@everyone ```".to_owned()),
        1 => Just("[REDACTED:github-token]".to_owned()),
    ];
    let keys = prop_oneof![
        3 => noise.clone(),
        1 => Just("password=".to_owned()),
        1 => Just("Authorization: Bearer ".to_owned()),
        1 => Just("token: ".to_owned()),
    ];
    let sep = prop::sample::select(vec![" ", "\n", "\t", " | ", "\n\n", "; "]);
    let line_break = prop::sample::select(vec!["\n", "\r\n", "\n\n"]);
    let before =
        prop_oneof![(noise, sep.clone()).prop_map(|(n, s)| n + s), (keys.clone(), line_break).prop_map(|(k, s)| k + s)];
    (before, sep, keys).prop_map(|(before, s, after)| (before, s.to_owned() + &after))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// Every kind of secret the corpus generates (every self-identifying
    /// token format, webhook URLs, private keys, passwords and secrets in
    /// assignments, URLs with credentials), placed in random text, is gone
    /// after redaction, with both redactors, and redacting again changes
    /// nothing.
    #[test]
    fn a_planted_secret_never_survives(
        seed in any::<u64>(),
        pick in any::<prop::sample::Index>(),
        (before, after) in surrounding(),
    ) {
        let cases = corpus::positives(seed, 1);
        let case = pick.get(&cases);
        let text = format!("{before}{}{after}", case.text);
        for redactor in [Redactor::new(), Redactor::conservative()] {
            let once = redactor.redact(&text).text.into_owned();
            for (kind, secret) in &case.secrets {
                prop_assert!(!once.contains(secret.as_str()), "{kind} {secret:?} survived in {once:?}");
            }
            let twice = redactor.redact(&once).text.into_owned();
            prop_assert_eq!(&twice, &once, "redacting twice changed the text");
        }
    }

    /// One secret of every self-identifying kind at once, separated by noise.
    #[test]
    fn every_kind_at_once_is_redacted(seed in any::<u64>(), noise in "[ -~]{0,20}") {
        let mut rng = corpus::Rng::new(seed);
        let tokens: Vec<String> = corpus::TOKEN_KINDS.iter().map(|kind| corpus::token(&mut rng, kind)).collect();
        let text = tokens.join(&format!(" {noise}\n"));
        let out = redact_text(&text);
        for token in &tokens {
            prop_assert!(!out.contains(token.as_str()), "{token:?} survived in {out:?}");
        }
    }
}

// ---------------------------------------------------------------------------
// The embed builder against an independent copy of Discord's limits
// ---------------------------------------------------------------------------

/// Discord's limits, written out again from Discord's documentation rather
/// than taken from `embed::limits`, so a wrong constant there is caught.
fn discord_accepts(payload: &MessagePayload) -> Result<(), String> {
    let body = serde_json::to_value(payload).map_err(|e| e.to_string())?;
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let within = |what: &str, v: &Value, max: usize| {
        if chars(v) > max { Err(format!("{what} has {} chars (max {max})", chars(v))) } else { Ok(()) }
    };
    within("content", &body["content"], 2000)?;
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > 10 {
        return Err(format!("{} embeds (max 10)", embeds.len()));
    }
    if chars(&body["content"]) == 0 && embeds.is_empty() {
        return Err("empty message".into());
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        within(&format!("embed {i} title"), &embed["title"], 256)?;
        within(&format!("embed {i} description"), &embed["description"], 4096)?;
        within(&format!("embed {i} footer"), &embed["footer"]["text"], 2048)?;
        within(&format!("embed {i} author"), &embed["author"]["name"], 256)?;
        total += chars(&embed["title"])
            + chars(&embed["description"])
            + chars(&embed["footer"]["text"])
            + chars(&embed["author"]["name"]);
        let fields = embed["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > 25 {
            return Err(format!("embed {i} has {} fields (max 25)", fields.len()));
        }
        for (f, field) in fields.iter().enumerate() {
            within(&format!("embed {i} field {f} name"), &field["name"], 256)?;
            within(&format!("embed {i} field {f} value"), &field["value"], 1024)?;
            // Discord answers 50035 "This field is required" for an empty name or value.
            if chars(&field["name"]) == 0 || chars(&field["value"]) == 0 {
                return Err(format!("embed {i} field {f} has an empty name or value: {field}"));
            }
            total += chars(&field["name"]) + chars(&field["value"]);
        }
    }
    if total > 6000 {
        return Err(format!("embeds hold {total} chars (max 6000)"));
    }
    Ok(())
}

/// Lengths around every limit, in one- and multi-byte characters.
fn sized_text() -> impl Strategy<Value = String> {
    let len = prop::sample::select(vec![0usize, 1, 255, 256, 257, 1023, 1024, 1025, 2047, 2049, 4096, 4097, 6001]);
    let unit = prop::sample::select(vec!["a", "é", "🦀", "a\u{301}", " ", "@everyone "]);
    prop_oneof![
        2 => (len, unit).prop_map(|(n, u)| u.repeat(n).chars().take(n).collect()),
        1 => any::<String>(),
        1 => "[a-z ]{0,300}",
    ]
}

fn big_notification() -> impl Strategy<Value = Notification> {
    let field = (sized_text(), sized_text(), any::<bool>()).prop_map(|(name, value, inline)| NotifyField {
        name,
        value,
        inline,
    });
    (prop::option::of(sized_text()), sized_text(), prop::collection::vec(field, 0..30))
        .prop_map(|(title, message, fields)| Notification { title, message, fields, ..Default::default() })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(160))]

    #[test]
    fn notifications_always_fit_discords_limits(note in big_notification(), project in sized_text()) {
        let payload = build_notification(&note, &project);
        if let Err(broken) = discord_accepts(&payload) {
            return Err(TestCaseError::fail(broken));
        }
    }

}

proptest! {
    // Each case builds up to a dozen notifications of thousands of characters.
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// A backlog merged into one message still fits, and nothing is dropped
    /// or reordered: the merged embeds are the first `taken` payloads' embeds.
    #[test]
    fn coalesced_backlogs_fit_and_keep_order(notes in prop::collection::vec(big_notification(), 1..14)) {
        let queue: Vec<MessagePayload> = notes.iter().map(|n| build_notification(n, "p")).collect();
        let (merged, taken) = coalesce(&queue).unwrap();
        prop_assert!(taken >= 1 && taken <= queue.len());
        if let Err(broken) = discord_accepts(&merged) {
            return Err(TestCaseError::fail(broken));
        }
        let expected: Vec<_> = queue[..taken].iter().flat_map(|p| p.embeds.clone()).collect();
        prop_assert_eq!(merged.embeds, expected);
    }

    #[test]
    fn tool_error_reports_fit_discords_limits(
        tool in sized_text(),
        error in sized_text(),
        project in sized_text(),
        count in 1usize..40,
    ) {
        let failure = ToolFailure { tool, input: json!({ "command": error.clone() }), error };
        for payload in [templates::tool_error(&failure, &project), templates::tool_errors(&vec![failure.clone(); count], &project)] {
            if let Err(broken) = discord_accepts(&payload) {
                return Err(TestCaseError::fail(broken));
            }
        }
    }
}
