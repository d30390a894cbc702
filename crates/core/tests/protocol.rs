//! Golden protocol frames: every fixture decodes and re-encodes to itself.
//! `js-shim/wasm.test.ts` checks the same files through the wasm build.

use omp_discord_core::protocol::{decode_client_frame, decode_server_frame, encode_frame};
use serde_json::Value;

fn fixtures(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/protocol/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn client_frames_round_trip() {
    for fixture in fixtures("client_frames.json") {
        let frame = decode_client_frame(fixture.to_string().as_bytes()).unwrap();
        let encoded: Value = serde_json::from_str(&encode_frame(&frame)).unwrap();
        assert_eq!(encoded, fixture);
    }
}

#[test]
fn server_frames_round_trip() {
    for fixture in fixtures("server_frames.json") {
        let frame = decode_server_frame(fixture.to_string().as_bytes()).unwrap();
        let encoded: Value = serde_json::from_str(&encode_frame(&frame)).unwrap();
        assert_eq!(encoded, fixture);
    }
}
