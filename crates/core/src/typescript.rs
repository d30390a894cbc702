//! The TypeScript types of the frames and of the shim's calls, generated from
//! the Rust types (ts-rs, a dev-dependency) into `js-shim/generated/types.ts`,
//! which the shim imports and `tsc` checks. This test fails when the file is
//! stale; `OMP_DISCORD_WRITE_TYPES=1 cargo test -p omp-discord-core typescript`
//! rewrites it.

use ts_rs::{Config, TS};

use crate::approval::ApprovalPolicy;
use crate::inbound::Delivery;
use crate::protocol::{
    AttachmentInfo, ChannelInfo, ChannelMessage, ClientFrame, ErrorCode, GuildInfo, Hello, NotifyRequest, ServerFrame,
    SessionAction, SessionRef,
};
use crate::schema::ToolDefinition;
use crate::settings::{Deadlines, ShimSettings};
use crate::shim::client::ClientFailure;
use crate::shim::command::{CommandStep, Notice};
use crate::shim::{ApprovalGate, ApprovalStep, EventStep, InboundStep, OmpSession, ToolCall};
use crate::tools::ToolText;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../js-shim/generated/types.ts");

fn generated() -> String {
    // Numbers cross the boundary as JS numbers (`Serializer::json_compatible()`).
    let cfg = Config::new().with_large_int("number");
    let decls = [
        ClientFrame::decl(&cfg),
        Hello::decl(&cfg),
        NotifyRequest::decl(&cfg),
        SessionRef::decl(&cfg),
        ServerFrame::decl(&cfg),
        ErrorCode::decl(&cfg),
        SessionAction::decl(&cfg),
        Delivery::decl(&cfg),
        ChannelMessage::decl(&cfg),
        AttachmentInfo::decl(&cfg),
        GuildInfo::decl(&cfg),
        ChannelInfo::decl(&cfg),
        serde_json::Value::decl(&cfg),
        ShimSettings::decl(&cfg),
        Deadlines::decl(&cfg),
        ApprovalPolicy::decl(&cfg),
        OmpSession::decl(&cfg),
        EventStep::decl(&cfg),
        ToolCall::decl(&cfg),
        ToolText::decl(&cfg),
        ToolDefinition::decl(&cfg),
        InboundStep::decl(&cfg),
        ApprovalStep::decl(&cfg),
        ApprovalGate::decl(&cfg),
        CommandStep::decl(&cfg),
        Notice::decl(&cfg),
        ClientFailure::decl(&cfg),
    ];
    let mut text = String::from(
        "// Generated from the Rust types by crates/core/src/typescript.rs (ts-rs). Do not edit:\n// \
         OMP_DISCORD_WRITE_TYPES=1 cargo test -p omp-discord-core typescript\n",
    );
    for decl in decls {
        text.push_str(&format!("\nexport {decl}\n"));
    }
    text
}

#[test]
fn the_shims_types_match_the_rust_types() {
    let text = generated();
    if std::env::var_os("OMP_DISCORD_WRITE_TYPES").is_some() {
        std::fs::write(PATH, &text).expect("js-shim/generated is writable");
    }
    let committed = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        committed == text,
        "js-shim/generated/types.ts is stale: run OMP_DISCORD_WRITE_TYPES=1 cargo test -p omp-discord-core typescript"
    );
}
