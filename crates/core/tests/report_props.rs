//! Property tests of the message templates and the session reporter: whatever
//! the input (arbitrary Unicode, huge strings, backtick runs, mass mentions),
//! every payload passes Discord's limits, never pings everyone, never shows
//! any part of a secret, never lets text out of its code block, and long
//! output arrives whole.

use omp_discord_core::embed::{MessagePayload, validate_message};
use omp_discord_core::event::RunSummary;
use omp_discord_core::markdown;
use omp_discord_core::redact::redact_text;
use omp_discord_core::reporter::{Level, Report, ReportConfig, SessionInfo, SessionReporter};
use omp_discord_core::split::split_long_output;
use omp_discord_core::templates::{self, ApprovalRequest, RunCard, SessionStart, ToolFailure, ToolUse};
use proptest::prelude::*;
use serde_json::{Value, json};

const ZWSP: char = '\u{200b}';

/// A fake token the redactor knows; no part of it may reach Discord.
const SECRET: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token

/// Text built from the pieces that break naive builders, plus any Unicode.
fn nasty_text(max_pieces: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("`".to_owned()),
        Just("```".to_owned()),
        Just("````rust\n".to_owned()),
        Just("@everyone".to_owned()),
        Just("@here".to_owned()),
        Just("@".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\\".to_owned()),
        Just("*_~|>#-[]()<>".to_owned()),
        Just(format!(" {SECRET} ")),
        Just("password=hunter2hunter2".to_owned()),
        Just("<system-reminder>".to_owned()),
        Just("é🦀\u{301}\u{200b}".to_owned()),
        "[a-z ]{1,40}",
        any::<String>(),
    ];
    prop::collection::vec(piece, 0..max_pieces).prop_map(|pieces| pieces.concat())
}

fn all_text(payload: &MessagePayload) -> Vec<&str> {
    let mut texts: Vec<&str> = payload.content.as_deref().into_iter().collect();
    for embed in &payload.embeds {
        texts.extend(embed.title.as_deref());
        texts.extend(embed.description.as_deref());
        texts.extend(embed.footer.as_ref().map(|f| f.text.as_str()));
        texts.extend(embed.author.as_ref().map(|a| a.name.as_str()));
        for field in &embed.fields {
            texts.push(&field.name);
            texts.push(&field.value);
        }
    }
    texts
}

/// What every payload must satisfy.
fn check(payload: &MessagePayload) -> Result<(), TestCaseError> {
    prop_assert!(validate_message(payload).is_ok(), "{:?}", validate_message(payload));
    for text in all_text(payload) {
        prop_assert!(!text.contains("@everyone") && !text.contains("@here"), "{text:?}");
        prop_assert!(!text.contains(&SECRET[..6]), "a secret leaked: {text:?}");
    }
    let json = serde_json::to_value(payload).expect("payloads serialize");
    prop_assert_eq!(&json["allowed_mentions"], &json!({ "parse": [] }));
    Ok(())
}

/// A code block built from untrusted text has exactly its own two fences.
fn check_fenced(text: &str) -> Result<(), TestCaseError> {
    prop_assert!(text.starts_with("```"), "{text:?}");
    prop_assert!(text.ends_with("\n```"), "{text:?}");
    prop_assert_eq!(text.matches("```").count(), 2, "{:?}", text);
    Ok(())
}

fn code_body(description: &str) -> &str {
    let (_, rest) = description.split_once('\n').expect("a fence line");
    rest.strip_suffix("\n```").expect("a closing fence")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn split_parts_are_valid_and_hold_the_whole_text(
        title in nasty_text(8),
        text in nasty_text(400),
        lang in prop_oneof![Just(String::new()), Just("rust".to_owned()), any::<String>()],
    ) {
        let parts = split_long_output(&title, &text, &lang);
        prop_assert!(!parts.is_empty());
        let mut joined = String::new();
        for (index, part) in parts.iter().enumerate() {
            check(part)?;
            let heading = part.embeds[0].title.as_deref().unwrap_or_default();
            if parts.len() > 1 {
                let suffix = format!("({}/{})", index + 1, parts.len());
                prop_assert!(heading.ends_with(&suffix), "{heading:?}");
            }
            for embed in &part.embeds {
                let description = embed.description.as_deref().unwrap_or_default();
                check_fenced(description)?;
                joined.push_str(code_body(description));
            }
        }
        let redacted = redact_text(&text).replace(ZWSP, "");
        if !redacted.is_empty() {
            prop_assert_eq!(joined.replace(ZWSP, ""), redacted);
        }
    }

    #[test]
    fn templates_accept_any_text(
        a in nasty_text(60),
        b in nasty_text(60),
        c in nasty_text(20),
        numbers in any::<(u64, u64, u32, u16)>(),
        cost in any::<f64>(),
        choices in prop::collection::vec(nasty_text(10), 0..40),
        project in prop_oneof![nasty_text(8), "[a-zé@]{1000,3000}"],
    ) {
        let (big, small, turns, count) = numbers;
        check(&templates::session_started(&SessionStart {
            cwd: a.clone(), host: b.clone(), model: Some(c.clone()), prompt: Some(b.clone()),
        }))?;
        let summary = RunSummary {
            answer: Some(a.clone()),
            stop_reason: Some(c.clone()),
            error: (count % 2 == 0).then(|| b.clone()),
            tool_calls: choices.clone(),
            turns: turns as usize,
            output_tokens: big,
            input_tokens: small,
            cost,
            files_changed: choices.clone(),
            duration_ms: Some(big),
        };
        check(&templates::run_finished(&summary, &project))?;

        let failure = ToolFailure { tool: c.clone(), input: json!({ "command": a, "path": b }), error: b.clone() };
        let single = templates::tool_error(&failure, &project);
        check(&single)?;
        check_fenced(single.embeds[0].description.as_deref().unwrap_or_default())?;
        let failures = vec![failure; usize::from(count % 60)];
        if !failures.is_empty() {
            let burst = templates::tool_errors(&failures, &c);
            check(&burst)?;
        }

        let uses: Vec<ToolUse> = choices.iter().map(|t| ToolUse { tool: t.clone(), input: json!(a) }).collect();
        check(&templates::tool_calls(&uses, &b))?;

        for tool in ["bash", c.as_str()] {
            let request = ApprovalRequest {
                tool: tool.to_owned(),
                input: json!({ "command": b, "env": { "K": a } }),
                reason: Some(c.clone()),
            };
            let approval = templates::approval_request(&request, &project);
            check(&approval)?;
            check_fenced(approval.embeds[0].description.as_deref().unwrap_or_default())?;
        }

        let card = RunCard {
            prompt: Some(a.clone()),
            elapsed_ms: big,
            running: choices.iter().map(|t| (t.clone(), b.clone())).collect(),
            activity: Some(c.clone()),
            tools_done: choices.iter().map(|t| (t.clone(), usize::from(count))).collect(),
            tool_errors: usize::from(count),
            turns: turns as usize,
            input_tokens: small,
            output_tokens: big,
            cost,
        };
        let mut card = templates::run_card(&card, &b);
        check(&card)?;
        templates::mark_subagent(&mut card);
        check(&card)?;
    }

    #[test]
    fn escaped_text_shows_no_formatting(text in nasty_text(40)) {
        let escaped = markdown::escape_markdown(&text);
        // Every special character is preceded by a backslash that is itself not escaped.
        let chars: Vec<char> = escaped.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            if chars[i] == '\\' {
                i += 2;
                continue;
            }
            prop_assert!(!"*_~`|[]<>".contains(chars[i]), "{escaped:?} at {i}");
            i += 1;
        }
    }

    #[test]
    fn the_reporter_only_emits_valid_reports(
        steps in prop::collection::vec((0usize..14, nasty_text(6), 0u64..20_000, any::<bool>()), 0..60),
        level in prop_oneof![Just(Level::Quiet), Just(Level::Normal), Just(Level::Verbose)],
        subagent in any::<bool>(),
        min_run_secs in 0u64..20,
    ) {
        let config = ReportConfig { level, min_run_secs, ..ReportConfig::default() };
        let session = SessionInfo {
            id: "s".to_owned(),
            cwd: "/src/@everyone".to_owned(),
            parent_id: subagent.then(|| "p".to_owned()),
            host: "h".to_owned(),
            model: None,
        };
        let mut reporter = SessionReporter::new(config, session);
        let mut now = 0u64;
        let mut posted: Vec<String> = Vec::new();
        for (kind, text, advance, flag) in steps {
            now += advance;
            let id = format!("call{}", text.len() % 4);
            let event = match kind {
                0 => json!({ "type": "session_start" }),
                1 => json!({ "type": "before_agent_start", "prompt": text }),
                2 => json!({ "type": "agent_start" }),
                3 => json!({ "type": "tool_call", "toolCallId": id, "toolName": text, "input": { "command": text } }),
                4 => json!({ "type": "tool_execution_start", "toolCallId": id, "toolName": "bash", "args": { "command": text } }),
                5 => json!({ "type": "tool_execution_end", "toolCallId": id, "toolName": "bash", "isError": flag,
                             "result": { "content": [{ "type": "text", "text": text }] } }),
                6 => json!({ "type": "tool_result", "toolCallId": id, "toolName": text, "isError": flag, "content": text }),
                7 => json!({ "type": "turn_end", "message": { "role": "assistant", "usage": { "input": 5, "output": 7 } } }),
                8 => json!({ "type": "auto_retry_start", "attempt": 1, "maxAttempts": 2, "errorMessage": text }),
                9 => json!({ "type": "auto_compaction_end" }),
                10 => json!({ "type": "agent_end", "willContinue": flag, "messages": [
                    { "role": "assistant", "stopReason": if flag { "error" } else { "stop" }, "errorMessage": text,
                      "content": [{ "type": "text", "text": text.repeat(20) }] }] }),
                11 => json!({ "type": "session_shutdown" }),
                12 => Value::String(text),
                _ => json!({ "type": "unknown", "x": text }),
            };
            let mut reports = reporter.on_event(&event, now);
            reports.extend(reporter.tick(now));
            for report in &reports {
                check(report.payload())?;
                match report {
                    Report::Post { key: Some(key), .. } => posted.push(key.clone()),
                    Report::Edit { key, .. } => prop_assert!(posted.contains(key), "edit of unposted {key}"),
                    Report::Post { key: None, .. } => {}
                }
            }
        }
    }
}

#[test]
fn fifty_kilobytes_arrive_complete() {
    let text: String = (0..1000).map(|i| format!("{i:04} ``` output line with @here and ünïcödé ✓\n")).collect();
    assert!(text.len() > 50_000);
    let parts = split_long_output("cargo build", &text, "text");
    assert!(parts.len() >= 2);
    let mut joined = String::new();
    for part in &parts {
        validate_message(part).unwrap();
        for embed in &part.embeds {
            let description = embed.description.as_deref().unwrap();
            assert_eq!(description.matches("```").count(), 2);
            assert!(!description.contains("@here"));
            joined.push_str(code_body(description));
        }
    }
    assert_eq!(joined.replace(ZWSP, ""), text);
}

#[test]
fn a_megabyte_of_one_line_splits_without_loss() {
    let text = "🦀`".repeat(500_000);
    let parts = split_long_output("t", &text, "");
    let mut joined = String::new();
    for part in &parts {
        validate_message(part).unwrap();
        for embed in &part.embeds {
            let description = embed.description.as_deref().unwrap();
            assert_eq!(description.matches("```").count(), 2);
            joined.push_str(code_body(description));
        }
    }
    assert_eq!(joined.replace(ZWSP, ""), text);
}
