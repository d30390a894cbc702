//! The reporter's behaviour, event by event: levels, thresholds, cards,
//! bursts, subagents and odd input.

use serde_json::{Value, json};

use super::*;
use crate::controls::{self, CardState};
use crate::embed::validate_message;
use crate::templates::{self, RunCard};

const SEC: u64 = 1000;

fn session() -> SessionInfo {
    SessionInfo { id: "s".into(), cwd: "/src/app".into(), host: "box".into(), ..Default::default() }
}

fn reporter(config: ReportConfig) -> SessionReporter {
    SessionReporter::new(config, session())
}

fn level(level: Level) -> ReportConfig {
    ReportConfig { level, ..Default::default() }
}

fn start(id: &str, tool: &str) -> Value {
    json!({ "type": "tool_execution_start", "toolCallId": id, "toolName": tool, "args": { "command": "ls" } })
}

fn end(id: &str, tool: &str, error: bool) -> Value {
    json!({ "type": "tool_execution_end", "toolCallId": id, "toolName": tool, "isError": error,
            "result": { "content": [{ "type": "text", "text": format!("{tool} said no") }] } })
}

fn agent_end(stop: &str) -> Value {
    let mut message = json!({ "role": "assistant", "stopReason": stop, "content": [{ "type": "text", "text": "ok" }] });
    if stop == "error" {
        message["errorMessage"] = json!("provider down");
    }
    json!({ "type": "agent_end", "messages": [message] })
}

fn titles(reports: &[Report]) -> Vec<String> {
    reports.iter().map(|r| r.payload().embeds[0].title.clone().unwrap_or_default()).collect()
}

fn kinds(reports: &[Report]) -> Vec<String> {
    reports
        .iter()
        .map(|r| match r {
            Report::Post { key, .. } => format!("post {}", key.as_deref().unwrap_or("-")),
            Report::Edit { key, .. } => format!("edit {key}"),
        })
        .collect()
}

/// Runs a whole session (start, one run with a failing and a working tool,
/// end) and returns everything reported.
fn session_at(config: ReportConfig) -> Vec<Report> {
    let mut r = reporter(config);
    let mut out = r.on_event(&json!({ "type": "session_start" }), 0);
    out.extend(r.on_event(&json!({ "type": "agent_start" }), 0));
    out.extend(r.on_event(&start("1", "bash"), SEC));
    out.extend(r.on_event(&end("1", "bash", true), 2 * SEC));
    out.extend(r.on_event(&start("2", "read"), 3 * SEC));
    out.extend(r.on_event(&end("2", "read", false), 4 * SEC));
    out.extend(r.tick(20 * SEC));
    out.extend(r.on_event(&agent_end("stop"), 30 * SEC));
    out.extend(r.on_event(&json!({ "type": "session_shutdown" }), 31 * SEC));
    out
}

#[test]
fn level_table() {
    let quiet = session_at(level(Level::Quiet));
    assert_eq!(titles(&quiet), ["Run finished"]);
    assert_eq!(kinds(&quiet), ["post card:s:1"]);

    let normal = session_at(level(Level::Normal));
    assert_eq!(
        titles(&normal),
        ["Session started · app", "Running · 0 ms", "Tool error: bash", "Running · 20s", "Run finished"]
    );
    assert_eq!(kinds(&normal), ["post session:s", "post card:s:1", "post -", "edit card:s:1", "edit card:s:1"]);

    let verbose = session_at(level(Level::Verbose));
    let verbose_titles = titles(&verbose);
    // The first call goes out at once, the second (within the interval) at the next due tick.
    assert_eq!(verbose_titles.iter().filter(|t| *t == "Tool call").count(), 2, "{verbose_titles:?}");
    assert_eq!(verbose_titles.len(), normal.len() + 2, "{verbose_titles:?}");

    for report in quiet.iter().chain(&normal).chain(&verbose) {
        validate_message(report.payload()).unwrap();
    }
}

#[test]
fn short_runs_stay_quiet_but_failures_do_not() {
    let config = ReportConfig { min_run_secs: 10, ..Default::default() };
    let mut r = reporter(config.clone());
    let mut out = r.on_event(&json!({ "type": "agent_start" }), 0);
    out.extend(r.tick(9 * SEC));
    out.extend(r.on_event(&agent_end("stop"), 9_999));
    assert!(out.is_empty(), "{:?}", kinds(&out));

    let mut r = reporter(config.clone());
    r.on_event(&json!({ "type": "agent_start" }), 0);
    let out = r.on_event(&agent_end("error"), 2 * SEC);
    assert_eq!(titles(&out), ["Run failed"]);
    assert_eq!(kinds(&out), ["post card:s:1"]);

    // A long run gets its card once it is old enough, then the final edit.
    let mut r = reporter(config);
    r.on_event(&json!({ "type": "agent_start" }), 0);
    assert!(r.tick(9 * SEC).is_empty());
    assert_eq!(kinds(&r.tick(10 * SEC)), ["post card:s:1"]);
    let out = r.on_event(&agent_end("stop"), 12 * SEC);
    assert_eq!(kinds(&out), ["edit card:s:1"]);
    assert!(out[0].payload().embeds[0].fields.iter().any(|f| f.name == "Duration" && f.value == "12s"));
}

#[test]
fn quiet_threshold_counts_the_whole_run() {
    let mut r = reporter(ReportConfig { level: Level::Quiet, min_run_secs: 5, ..Default::default() });
    r.on_event(&json!({ "type": "agent_start" }), 0);
    assert!(r.tick(60 * SEC).is_empty(), "quiet never posts a card");
    assert_eq!(titles(&r.on_event(&agent_end("stop"), 60 * SEC)), ["Run finished"]);
}

#[test]
fn include_and_exclude_select_tool_messages() {
    let config = ReportConfig {
        level: Level::Verbose,
        include_tools: vec!["bash".into(), "mcp__*".into()],
        exclude_tools: vec!["mcp__noisy*".into()],
        ..Default::default()
    };
    assert!(config.tool_selected("bash"));
    assert!(config.tool_selected("mcp__github_search"));
    assert!(!config.tool_selected("mcp__noisy_log"));
    assert!(!config.tool_selected("read"));

    let mut r = reporter(config);
    r.on_event(&json!({ "type": "agent_start" }), 0);
    let mut out = Vec::new();
    for (i, tool) in ["read", "mcp__noisy_log", "bash"].into_iter().enumerate() {
        let id = i.to_string();
        out.extend(r.on_event(&start(&id, tool), 100 * SEC * i as u64 + SEC));
        out.extend(r.on_event(&end(&id, tool, true), 100 * SEC * i as u64 + 2 * SEC));
    }
    let titles = titles(&out);
    assert_eq!(titles.iter().filter(|t| t.starts_with("Tool error")).collect::<Vec<_>>(), ["Tool error: bash"]);
    assert_eq!(titles.iter().filter(|t| t.starts_with("Tool call")).count(), 1);
    // The card still counts every tool.
    let card = r.tick(400 * SEC);
    assert!(card[0].payload().embeds[0].fields.iter().any(|f| f.value.starts_with("3: ")), "{card:?}");
}

#[test]
fn bursts_of_errors_coalesce_per_interval() {
    let mut r = reporter(ReportConfig::default());
    r.on_event(&json!({ "type": "agent_start" }), 0);
    let mut errors = Vec::new();
    for i in 0..6u64 {
        let id = i.to_string();
        r.on_event(&start(&id, "bash"), i * 500);
        let out = r.on_event(&end(&id, "bash", true), i * 500 + 100);
        errors.extend(out.into_iter().filter(|r| r.key().is_none()));
    }
    assert_eq!(titles(&errors), ["Tool error: bash"], "the first error goes out at once");
    assert!(r.tick(5 * SEC + 99).iter().all(|r| r.key().is_some()), "the rest wait for the interval");
    let later: Vec<Report> = r.tick(5 * SEC + 100).into_iter().filter(|r| r.key().is_none()).collect();
    assert_eq!(titles(&later), ["5 tool errors"]);
    assert!(r.tick(60 * SEC).iter().all(|r| r.key().is_some()));

    // tool_execution_end and tool_result for the same call count once.
    let failed =
        json!({ "type": "tool_result", "toolCallId": "0", "toolName": "bash", "isError": true, "content": [] });
    assert!(r.on_event(&failed, 70 * SEC).iter().all(|r| r.key().is_some()));
}

#[test]
fn tool_errors_never_leak_a_cut_secret() {
    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
    let mut r = reporter(ReportConfig::default());
    let command = format!("{} {secret}", "x".repeat(279));
    r.on_event(
        &json!({ "type": "tool_call", "toolCallId": "1", "toolName": "bash", "input": { "command": command } }),
        0,
    );
    let error = format!("{} {secret} tail", "e".repeat(templates::OUTPUT_KEEP - 10));
    let event = json!({ "type": "tool_result", "toolCallId": "1", "toolName": "bash", "isError": true,
                        "content": [{ "type": "text", "text": error }] });
    let out = r.on_event(&event, 1);
    assert_eq!(titles(&out)[0], "Tool error: bash");
    assert!(titles(&out)[1..].iter().all(|t| t.starts_with("Full output of bash")), "{:?}", titles(&out));
    let json = serde_json::to_string(&out).unwrap();
    assert!(!json.contains("ghp_"), "{json}");
}

fn failure(id: &str, text: &str) -> Value {
    json!({ "type": "tool_result", "toolCallId": id, "toolName": "bash", "isError": true,
            "content": [{ "type": "text", "text": text }] })
}

#[test]
fn a_long_tool_error_arrives_whole_as_a_file() {
    let mut r = reporter(ReportConfig::default());
    let output: String = (0..1200).map(|n| format!("line {n:05} of the build log\n")).collect();
    assert!(output.len() > 30_000);
    let out = r.on_event(&failure("1", &output), 1);
    assert_eq!(out.len(), 1, "{out:?}");
    let payload = out[0].payload();
    validate_message(payload).unwrap();
    assert_eq!(payload.files.len(), 1);
    assert_eq!(payload.files[0].filename, "bash-output.txt");
    assert_eq!(payload.files[0].content, output);
    // A short error stays in the message alone.
    let out = r.on_event(&failure("2", "exit 1"), 100 * SEC);
    assert!(out[0].payload().files.is_empty());
}

#[test]
fn output_too_big_for_a_file_follows_in_parts() {
    let mut r = reporter(ReportConfig::default());
    let output: String = (0..3000).map(|n| format!("line {n:05} of a very long build log\n")).collect();
    assert!(output.len() > crate::embed::limits::FILES_BYTES && output.len() < templates::OUTPUT_KEEP);
    let out = r.on_event(&failure("1", &output), 1);
    assert!(out.len() > 2, "{}", out.len());
    assert!(out[0].payload().files.is_empty());
    let mut joined = String::new();
    for report in &out[1..] {
        validate_message(report.payload()).unwrap();
        for embed in &report.payload().embeds {
            let block = embed.description.as_deref().unwrap();
            joined.push_str(block.trim_start_matches("```text\n").trim_end_matches("\n```"));
        }
    }
    assert!(joined == output, "joined {} of {} bytes", joined.len(), output.len());
}

#[test]
fn pending_errors_go_out_before_the_summary() {
    let mut r = reporter(ReportConfig::default());
    r.on_event(&json!({ "type": "agent_start" }), 0);
    for id in ["a", "b", "c"] {
        r.on_event(&end(id, "bash", true), SEC);
    }
    let out = r.on_event(&agent_end("stop"), 2 * SEC);
    assert_eq!(titles(&out), ["2 tool errors", "Run finished"]);
}

#[test]
fn card_edits_are_rate_limited_and_latest_state_wins() {
    let mut r = reporter(ReportConfig { card_interval_secs: 5, ..Default::default() });
    let out = r.on_event(&json!({ "type": "agent_start" }), 0);
    assert_eq!(kinds(&out), ["post card:s:1"]);
    let mut edits = Vec::new();
    for i in 0..40u64 {
        let id = format!("c{i}");
        let now = i * 250;
        edits.extend(r.on_event(&start(&id, "read"), now));
        edits.extend(r.on_event(&end(&id, "read", false), now + 100));
        edits.extend(r.tick(now + 200));
    }
    // 10 s of changes: edits at 5 s and 10 s at most.
    assert_eq!(kinds(&edits), ["edit card:s:1"], "one edit in the first 10 s");
    let late = r.tick(10 * SEC);
    assert_eq!(kinds(&late), ["edit card:s:1"]);
    let done = late[0].payload().embeds[0].fields.iter().find(|f| f.name == "Tools done").unwrap();
    assert_eq!(done.value, "40: read ×40", "the latest state is sent");
    assert!(r.tick(14 * SEC).is_empty(), "nothing new, nothing sent");
    assert!(r.tick(39 * SEC).is_empty());
    assert_eq!(kinds(&r.tick(40 * SEC)), ["edit card:s:1"], "elapsed time refreshes every 30 s");
    // The final edit is never held back.
    let out = r.on_event(&agent_end("stop"), 40 * SEC + 1);
    assert_eq!(kinds(&out), ["edit card:s:1"]);
}

#[test]
fn card_shows_current_tool_tokens_and_activity() {
    let mut r = reporter(ReportConfig::default());
    r.on_event(&json!({ "type": "before_agent_start", "prompt": "fix the build" }), 0);
    r.on_event(&json!({ "type": "agent_start" }), 0);
    r.on_event(&start("1", "bash"), 10);
    r.on_event(
        &json!({ "type": "turn_end", "turnIndex": 0, "toolResults": [],
                 "message": { "role": "assistant", "usage": { "input": 2000, "output": 30, "cost": { "total": 0.01 } } } }),
        20,
    );
    r.on_event(
        &json!({ "type": "auto_retry_start", "attempt": 1, "maxAttempts": 3, "errorMessage": "overloaded" }),
        30,
    );
    let card = r.tick(6 * SEC);
    let embed = &card[0].payload().embeds[0];
    assert_eq!(embed.title.as_deref(), Some("Running · 6s"));
    assert_eq!(embed.description.as_deref(), Some("fix the build"));
    let fields: Vec<(&str, &str)> = embed.fields.iter().map(|f| (f.name.as_str(), f.value.as_str())).collect();
    assert_eq!(
        fields,
        [
            ("Now", "**bash** ls"),
            ("Status", "Retrying (1/3) after: overloaded"),
            ("Turns", "1"),
            ("Tokens", "2.0k in · 30 out"),
            ("Cost", "$0.0100")
        ]
    );
}

#[test]
fn will_continue_keeps_one_run() {
    let mut r = reporter(ReportConfig::default());
    r.on_event(&json!({ "type": "agent_start" }), 0);
    let failed = json!({ "role": "assistant", "stopReason": "error", "errorMessage": "overloaded", "content": [] });
    let retry = json!({ "type": "agent_end", "willContinue": true, "messages": [failed] });
    let out = r.on_event(&retry, SEC);
    assert!(out.is_empty(), "{:?}", kinds(&out));
    assert!(r.on_event(&json!({ "type": "agent_start" }), 2 * SEC).is_empty());
    // OMP hands extensions the whole conversation: the failed turn, then the retried one.
    let mut end = agent_end("stop");
    end["messages"].as_array_mut().unwrap().insert(0, failed);
    let out = r.on_event(&end, 8 * SEC);
    assert_eq!(kinds(&out), ["edit card:s:1"]);
    let embed = &out[0].payload().embeds[0];
    assert_eq!(embed.title.as_deref(), Some("Run finished"));
    assert!(embed.fields.iter().any(|f| f.name == "Turns" && f.value == "2"));
    assert!(embed.fields.iter().any(|f| f.name == "Duration" && f.value == "8s"));
}

#[test]
fn next_run_gets_a_new_card() {
    let mut r = reporter(ReportConfig::default());
    r.on_event(&json!({ "type": "agent_start" }), 0);
    r.on_event(&agent_end("stop"), SEC);
    let out = r.on_event(&json!({ "type": "agent_start" }), 2 * SEC);
    // The last card's Retry / Continue come off as the next run starts.
    assert_eq!(kinds(&out), ["edit card:s:1", "post card:s:2000"]);
    assert!(out[0].payload().components.is_empty(), "{out:?}");
    assert_eq!(controls::state_of(out[1].payload()), Some(CardState::Running));
    // A run whose agent_end went missing is closed when the next starts.
    let out = r.on_event(&json!({ "type": "agent_start" }), 3 * SEC);
    assert_eq!(kinds(&out), ["edit card:s:2000", "post card:s:3000"]);
    assert_eq!(titles(&out)[0], "Run interrupted");
    assert!(out[0].payload().components.is_empty(), "a closed stale run offers no buttons");
}

#[test]
fn shutdown_flushes_and_closes_the_card() {
    let mut r = reporter(ReportConfig::default());
    r.on_event(&json!({ "type": "agent_start" }), 0);
    r.on_event(&end("a", "bash", true), 100);
    r.on_event(&end("b", "bash", true), 200);
    let out = r.on_event(&json!({ "type": "session_shutdown" }), 300);
    assert_eq!(titles(&out), ["Tool error: bash", "Run interrupted"]);
    assert_eq!(kinds(&out), ["post -", "edit card:s:1"]);
    assert!(r.tick(100 * SEC).is_empty());
}

// Messages of a conversation as OMP hands it over at `agent_end`.
fn user(text: &str) -> Value {
    json!({ "role": "user", "content": text })
}
fn call(id: &str) -> Value {
    json!({ "role": "assistant", "stopReason": "toolUse",
            "content": [{ "type": "toolCall", "id": id, "name": "bash", "arguments": {} }] })
}
fn answer(text: &str) -> Value {
    json!({ "role": "assistant", "stopReason": "stop", "content": [{ "type": "text", "text": text }] })
}
fn result(id: &str) -> Value {
    json!({ "role": "toolResult", "toolCallId": id, "content": [] })
}
/// The last report's embed fields as `name=value;…`.
fn fields(reports: &[Report]) -> String {
    let embed = &reports.last().unwrap().payload().embeds[0];
    embed.fields.iter().map(|f| format!("{}={}", f.name, f.value)).collect::<Vec<_>>().join(";")
}

#[test]
fn a_run_summary_counts_only_that_runs_messages() {
    // A resumed session: its history holds an earlier run the reporter never saw.
    let mut history = vec![user("old"), call("a"), result("a"), answer("old done")];
    history.extend([user("deploy"), call("b"), result("b"), call("c"), result("c"), answer("deployed")]);
    let mut reporter = reporter(ReportConfig::default());
    reporter.on_event(&json!({ "type": "agent_start" }), 0);
    let first = reporter.on_event(&json!({ "type": "agent_end", "messages": history }), 1_000);
    assert!(fields(&first).contains("Turns=3") && fields(&first).contains("bash ×2"), "{}", fields(&first));
    // The next run: OMP hands over the whole conversation again.
    history.extend([user("test"), call("d"), result("d"), answer("tested")]);
    reporter.on_event(&json!({ "type": "agent_start" }), 2_000);
    let second = reporter.on_event(&json!({ "type": "agent_end", "messages": history }), 3_000);
    assert!(fields(&second).contains("Turns=2") && fields(&second).contains("bash ×1"), "{}", fields(&second));
}

#[test]
fn subagents_fold_under_their_parent() {
    let info = SessionInfo { parent_id: Some("parent".into()), ..session() };
    let mut r = SessionReporter::new(level(Level::Verbose), info);
    assert_eq!(r.level(), Level::Quiet);
    let mut out = r.on_event(&json!({ "type": "session_start" }), 0);
    out.extend(r.on_event(&json!({ "type": "agent_start" }), 0));
    out.extend(r.on_event(&start("1", "bash"), 10));
    out.extend(r.on_event(&end("1", "bash", true), 20));
    out.extend(r.tick(60 * SEC));
    assert!(out.is_empty(), "{:?}", kinds(&out));
    let out = r.on_event(&agent_end("error"), 61 * SEC);
    assert_eq!(titles(&out), ["↳ subagent · Run failed"]);
    assert_eq!(kinds(&out), ["post card:s:1"]);
    assert!(out[0].payload().components.is_empty(), "people drive the main session, not its subagents");
}

#[test]
fn a_subagents_later_runs_update_its_one_summary() {
    let info = SessionInfo { parent_id: Some("parent".into()), ..session() };
    let mut r = SessionReporter::new(ReportConfig::default(), info);
    let mut history = vec![user("check"), call("a"), result("a"), answer("forgot to submit")];
    r.on_event(&json!({ "type": "agent_start" }), 0);
    let first = r.on_event(&json!({ "type": "agent_end", "messages": history }), 2 * SEC);
    assert_eq!(kinds(&first), ["post card:s:1"]);
    // OMP reminds the subagent to submit its result: another run in the same session.
    history.extend([user("<system-reminder>submit</system-reminder>"), call("b"), result("b"), answer("done")]);
    r.on_event(&json!({ "type": "agent_start" }), 3 * SEC);
    let second = r.on_event(&json!({ "type": "agent_end", "messages": history }), 5 * SEC);
    assert_eq!(kinds(&second), ["edit card:s:1"], "one message per subagent, not one per run");
    assert_eq!(titles(&second), ["↳ subagent · Run finished"]);
    assert!(fields(&second).contains("Turns=4") && fields(&second).contains("bash ×2"), "{}", fields(&second));
    assert!(fields(&second).contains("5s"), "the time since its first run: {}", fields(&second));
}

#[test]
fn session_card_gains_the_first_prompt() {
    let mut r = reporter(ReportConfig::default());
    let out = r.on_event(&json!({ "type": "session_start" }), 0);
    assert_eq!(out[0].payload().embeds[0].description.as_deref(), Some("*Waiting for the first prompt.*"));
    let prompt = json!({ "type": "before_agent_start", "prompt": "<system-reminder>x</system-reminder>hello" });
    let out = r.on_event(&prompt, 1);
    assert_eq!(kinds(&out), ["edit session:s"]);
    assert_eq!(out[0].payload().embeds[0].description.as_deref(), Some("hello"));
    assert!(r.on_event(&prompt, 2).is_empty(), "only the first prompt edits the session card");
    assert_eq!(
        r.on_event(&json!({ "type": "agent_start" }), 3)[0].payload().embeds[0].description.as_deref(),
        Some("hello")
    );
}

#[test]
fn long_answers_follow_in_parts() {
    let mut r = reporter(level(Level::Quiet));
    r.on_event(&json!({ "type": "agent_start" }), 0);
    let answer = "word ".repeat(3000);
    let event = json!({ "type": "agent_end", "messages": [
        { "role": "assistant", "stopReason": "stop", "content": [{ "type": "text", "text": answer }] }] });
    let out = r.on_event(&event, SEC);
    assert_eq!(titles(&out), ["Run finished", "Full answer (1/3)", "Full answer (2/3)", "Full answer (3/3)"]);
    out.iter().for_each(|r| validate_message(r.payload()).unwrap());
}

#[test]
fn odd_events_never_fail() {
    let mut r = reporter(level(Level::Verbose));
    for event in [
        json!(null),
        json!(1),
        json!({}),
        json!({ "type": 7 }),
        json!({ "type": "tool_execution_end", "result": "plain", "isError": true }),
        json!({ "type": "tool_execution_start", "toolName": 3, "args": [1, 2] }),
        json!({ "type": "tool_result", "content": { "weird": true }, "isError": true }),
        json!({ "type": "turn_end", "message": "x" }),
        json!({ "type": "agent_end", "messages": "x" }),
        json!({ "type": "auto_retry_start", "attempt": "one" }),
        json!({ "type": "before_agent_start", "prompt": 5 }),
    ] {
        for report in r.on_event(&event, 0).iter().chain(&r.tick(100 * SEC)) {
            validate_message(report.payload()).unwrap();
        }
    }
}

#[test]
fn errors_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ParseLevelError>();
    assert_send_sync::<SessionReporter>();
}

#[test]
fn reports_serialize_for_the_shim() {
    let report = Report::Edit { key: "card:s:1".into(), payload: templates::run_card(&RunCard::default(), "p") };
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["kind"], "edit");
    assert_eq!(json["key"], "card:s:1");
    let back: Report = serde_json::from_value(json).unwrap();
    assert_eq!(back, report);
    let post = serde_json::to_value(Report::Post { key: None, payload: report.payload().clone() }).unwrap();
    assert_eq!(post["kind"], "post");
    assert!(post["key"].is_null());
}
