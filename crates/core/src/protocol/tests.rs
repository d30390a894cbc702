//! Frames round-trip; decoding refuses what it must, keeps request ids and never echoes input;
//! error codes keep their wire names.

use super::*;

#[test]
fn hello_round_trips() {
    let hello = ClientFrame::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        client: "shim/0.1.0".into(),
        pid: 7,
        host: "box".into(),
    });
    let line = encode_frame(&hello);
    assert!(line.ends_with('\n'));
    assert_eq!(decode_client_frame(line.as_bytes()).unwrap(), hello);
}

#[test]
fn set_id_reaches_the_wire() {
    let mut frame = ClientFrame::Directory { id: String::new(), guild_id: None };
    frame.set_id("mcp-7".into());
    assert!(encode_frame(&frame).contains(r#""id":"mcp-7""#));
}

#[test]
fn oversized_frame_is_rejected_before_parsing() {
    let line = vec![b'x'; MAX_FRAME_BYTES + 1];
    let err = decode_client_frame(&line).unwrap_err();
    assert_eq!(err, FrameError::TooLarge { bytes: MAX_FRAME_BYTES + 1, max: MAX_FRAME_BYTES });
    assert_eq!(err.code(), ErrorCode::FrameTooLarge);
}

#[test]
fn garbage_is_malformed_without_echoing_input() {
    let err = decode_client_frame(b"{\"type\":\"notify\", sk-secret").unwrap_err();
    assert_eq!(err.code(), ErrorCode::MalformedFrame);
    assert!(!err.to_string().contains("sk-secret"), "{err}");
}

#[test]
fn missing_field_keeps_the_request_id() {
    let err = decode_client_frame(br#"{"type":"notify","id":"r7"}"#).unwrap_err();
    assert_eq!(err.request_id(), Some("r7"));
    assert!(err.to_string().contains("missing field"), "{err}");
}

#[test]
fn values_from_the_frame_are_never_repeated() {
    let secret = "ghp_abcdefghijklmnopqrstuvwxyz0123456789"; // fake, made-up token
    for line in [
        format!(r#"{{"type":"hello","protocol":"{secret}"}}"#),
        format!(r#"{{"type":"{secret}","id":"r1"}}"#),
        format!(r#"{{"type":"read","id":"r1","limit":"{secret}"}}"#),
    ] {
        let err = decode_client_frame(line.as_bytes()).unwrap_err().to_string();
        assert!(!err.contains("ghp_"), "{err}");
    }
    let err = decode_client_frame(br#"{"type":"notify","id":"r7"}"#).unwrap_err().to_string();
    assert!(err.contains("missing field `session`"), "{err}");
}

#[test]
fn an_old_hello_still_decodes_so_it_can_be_told_to_upgrade() {
    let frame = decode_client_frame(br#"{"type":"hello","protocol":0,"client":"shim/0.0.1"}"#).unwrap();
    assert!(matches!(frame, ClientFrame::Hello(Hello { protocol: 0, pid: 0, .. })));
}

#[test]
fn unknown_type_is_malformed() {
    let err = decode_client_frame(br#"{"type":"launch","id":"r1"}"#).unwrap_err();
    assert!(err.to_string().contains("unknown variant"), "{err}");
}

#[test]
fn overlong_request_id_is_refused() {
    let id = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
    let line = format!(r#"{{"type":"status","id":"{id}"}}"#);
    let err = decode_client_frame(line.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("request id"), "{err}");
}

#[test]
fn an_idempotency_key_rides_on_notify_and_an_overlong_one_is_refused_with_its_request_id() {
    let frame = |key: &str| {
        format!(
            r#"{{"type":"notify","id":"r1","session":{{"id":"s"}},"message":{{"content":"hi"}},"idempotency_key":"{key}"}}"#
        )
    };
    let key = "k".repeat(MAX_IDEMPOTENCY_KEY_BYTES);
    let ClientFrame::Notify(notify) = decode_client_frame(frame(&key).as_bytes()).unwrap() else { panic!("a notify") };
    assert_eq!(notify.idempotency_key.as_deref(), Some(key.as_str()));
    assert!(encode_frame(&ClientFrame::Notify(notify)).contains(&key));
    let err = decode_client_frame(frame(&format!("{key}k")).as_bytes()).unwrap_err();
    assert!(err.to_string().contains("idempotency_key"), "{err}");
    assert!(matches!(err, FrameError::Malformed { id: Some(ref id), .. } if id == "r1"), "{err:?}");
}

#[test]
fn error_codes_match_their_wire_names() {
    for code in [
        ErrorCode::MalformedFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::HandshakeRequired,
        ErrorCode::ProtocolMismatch,
        ErrorCode::InvalidMessage,
        ErrorCode::NotConfigured,
        ErrorCode::DiscordRejected,
        ErrorCode::DiscordUnavailable,
        ErrorCode::UnknownChannel,
        ErrorCode::DestinationHeld,
        ErrorCode::Forbidden,
        ErrorCode::SidecarUnavailable,
        ErrorCode::SidecarTimeout,
        ErrorCode::QueueFull,
    ] {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
}
