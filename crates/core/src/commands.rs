//! The `/omp` slash command: its definition (registered by the sidecar only
//! when its hash changes), how an invocation reads, and the replies' text.

use serde_json::{Value, json};
use twilight_model::application::command::{CommandOptionChoice, CommandOptionChoiceValue};

use crate::embed::{clean, limits};

/// The command's name.
pub const NAME: &str = "omp";

/// The `/omp` command with its subcommands, as Discord's bulk-overwrite body takes it.
#[must_use]
pub fn definitions() -> Value {
    let session = json!({
        "type": 3, "name": "session", "required": false,
        "description": "Session id (or its start); defaults to this thread's session",
        "max_length": 100,
    });
    json!([{
        "name": NAME,
        "type": 1,
        "description": "Drive the OMP sessions on this machine",
        "contexts": [0],
        "options": [
            { "type": 1, "name": "status", "description": "Sessions, their state and the bridge's health" },
            { "type": 1, "name": "sessions", "description": "Recent sessions and their threads" },
            {
                "type": 1, "name": "ask",
                "description": "Send a prompt to a session (this thread's by default), or start omp in a project",
                "options": [
                    { "type": 3, "name": "prompt", "description": "What to ask", "required": true, "max_length": 4000 },
                    {
                        "type": 3, "name": "project", "required": false, "autocomplete": true, "max_length": 100,
                        "description": "A configured project: its idle session gets the prompt, else a new omp starts there",
                    },
                    session,
                ],
            },
            {
                "type": 1, "name": "abort", "description": "Stop a session's current run (this thread's by default)",
                "options": [session],
            },
        ],
    }])
}

/// A short, stable hash of the definitions, to register them only when they change.
#[must_use]
pub fn definitions_hash() -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let text = definitions().to_string();
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("{hash:016x}")
}

/// An `/omp` invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `/omp status`.
    Status,
    /// `/omp sessions`.
    Sessions,
    /// `/omp ask prompt:<text> [project:<dir>] [session:<id>]`.
    Ask {
        /// The prompt.
        prompt: String,
        /// The session named, if any.
        session: Option<String>,
        /// The project directory named, if any.
        project: Option<String>,
    },
    /// `/omp abort [session:<id>]`.
    Abort {
        /// The session named, if any.
        session: Option<String>,
    },
}

/// Reads an application command's `data` (`{name, options}`) as an `/omp`
/// invocation; `None` for other commands or shapes.
#[must_use]
pub fn parse(data: &Value) -> Option<Invocation> {
    if data["name"] != NAME {
        return None;
    }
    let sub = data["options"].as_array()?.first()?;
    let option = |name: &str| {
        sub["options"].as_array()?.iter().find(|o| o["name"] == name)?["value"].as_str().map(str::to_owned)
    };
    Some(match sub["name"].as_str()? {
        "status" => Invocation::Status,
        "sessions" => Invocation::Sessions,
        "ask" => Invocation::Ask { prompt: option("prompt")?, session: option("session"), project: option("project") },
        "abort" => Invocation::Abort { session: option("session") },
        _ => return None,
    })
}

/// The option being typed in an autocomplete interaction's `data`: its name
/// and what was typed so far.
#[must_use]
pub fn focused_option(data: &Value) -> Option<(String, String)> {
    if data["name"] != NAME {
        return None;
    }
    let sub = data["options"].as_array()?.first()?;
    let focused = sub["options"].as_array()?.iter().find(|o| o["focused"] == true)?;
    let typed = match &focused["value"] {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    Some((focused["name"].as_str()?.to_owned(), typed))
}

/// Discord's most autocomplete choices in one answer.
pub const MAX_CHOICES: usize = 25;
/// Discord's longest choice name and string value.
pub const MAX_CHOICE_CHARS: usize = 100;

/// Autocomplete choices for `project:`: the project directories whose path
/// contains what was typed (ignoring case), in order, at most 25. A choice
/// shows the directory's name and path; its value is the path (a path longer
/// than Discord's 100-character value is left out).
#[must_use]
pub fn project_choices(dirs: &[String], typed: &str) -> Vec<CommandOptionChoice> {
    let typed = typed.trim().to_lowercase();
    dirs.iter()
        .filter(|dir| dir.chars().count() <= MAX_CHOICE_CHARS && dir.to_lowercase().contains(&typed))
        .take(MAX_CHOICES)
        .map(|dir| {
            let base = std::path::Path::new(dir).file_name().and_then(|n| n.to_str()).unwrap_or(dir);
            let name: String = format!("{base} · {dir}").chars().take(MAX_CHOICE_CHARS).collect();
            CommandOptionChoice { name, name_localizations: None, value: CommandOptionChoiceValue::String(dir.clone()) }
        })
        .collect()
}

/// The configured project directory `value` names: its exact path, or the
/// one directory with that name. `None` when it names none or several.
#[must_use]
pub fn resolve_project<'a>(dirs: &'a [String], value: &str) -> Option<&'a str> {
    let value = value.trim().trim_end_matches('/');
    if let Some(dir) = dirs.iter().find(|d| d.trim_end_matches('/') == value) {
        return Some(dir);
    }
    let mut named =
        dirs.iter().filter(|d| std::path::Path::new(d.as_str()).file_name().and_then(|n| n.to_str()) == Some(value));
    match (named.next(), named.next()) {
        (Some(dir), None) => Some(dir),
        _ => None,
    }
}

/// One session as `/omp status` and `/omp sessions` list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionLine {
    /// OMP's session id.
    pub id: String,
    /// The project (working directory's name).
    pub project: String,
    /// The machine.
    pub host: String,
    /// Its thread, if it has one.
    pub thread_id: Option<String>,
    /// Whether an OMP process serves it now.
    pub live: bool,
}

/// The list of sessions, as Markdown within a message's 2000 characters.
#[must_use]
pub fn sessions_text(title: &str, sessions: &[SessionLine]) -> String {
    let mut text = format!("**{title}**\n");
    if sessions.is_empty() {
        text.push_str("No sessions yet.");
    }
    for session in sessions {
        let thread = session.thread_id.as_deref().map(|t| format!(" · <#{t}>")).unwrap_or_default();
        let state = if session.live { "🟢 live" } else { "⚪ gone" };
        let short: String = session.id.chars().take(12).collect();
        text.push_str(&format!("{state} `{short}` {} on {}{thread}\n", session.project, session.host));
    }
    clean(&text, limits::CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_fit_discord_rules_and_hash_stably() {
        let definitions = definitions();
        let command = &definitions[0];
        assert!(command["description"].as_str().unwrap().len() <= 100);
        for sub in command["options"].as_array().unwrap() {
            let name = sub["name"].as_str().unwrap();
            assert!(name.chars().all(|c| c.is_ascii_lowercase()), "{name}");
            assert!(sub["description"].as_str().unwrap().len() <= 100, "{name}");
        }
        assert_eq!(definitions_hash(), definitions_hash());
        assert_eq!(definitions_hash().len(), 16);
    }

    #[test]
    fn invocations_parse() {
        let ask = json!({ "name": "omp", "options": [{ "name": "ask", "type": 1, "options": [
            { "name": "prompt", "type": 3, "value": "run the tests" }] }] });
        assert_eq!(parse(&ask), Some(Invocation::Ask { prompt: "run the tests".into(), session: None, project: None }));
        let in_project = json!({ "name": "omp", "options": [{ "name": "ask", "type": 1, "options": [
            { "name": "prompt", "type": 3, "value": "go" }, { "name": "project", "type": 3, "value": "/src/app" }] }] });
        assert_eq!(
            parse(&in_project),
            Some(Invocation::Ask { prompt: "go".into(), session: None, project: Some("/src/app".into()) })
        );
        let abort = json!({ "name": "omp", "options": [{ "name": "abort", "type": 1, "options": [
            { "name": "session", "type": 3, "value": "0199" }] }] });
        assert_eq!(parse(&abort), Some(Invocation::Abort { session: Some("0199".into()) }));
        assert_eq!(parse(&json!({ "name": "omp", "options": [{ "name": "status" }] })), Some(Invocation::Status));
        assert_eq!(parse(&json!({ "name": "other" })), None);
        assert_eq!(parse(&json!({ "name": "omp", "options": [{ "name": "ask" }] })), None);
    }

    #[test]
    fn autocomplete_lists_matching_projects_within_discord_limits() {
        let typing = json!({ "name": "omp", "type": 1, "options": [{ "name": "ask", "type": 1, "options": [
            { "name": "prompt", "type": 3, "value": "go" },
            { "name": "project", "type": 3, "value": "AP", "focused": true }] }] });
        assert_eq!(focused_option(&typing), Some(("project".into(), "AP".into())));
        assert_eq!(focused_option(&json!({ "name": "omp", "options": [{ "name": "ask", "options": [] }] })), None);

        let mut dirs: Vec<String> = (0..40).map(|n| format!("/src/app{n}")).collect();
        dirs.push("/src/blog".into());
        dirs.push(format!("/{}", "x".repeat(120)));
        let choices = project_choices(&dirs, "AP");
        assert_eq!(choices.len(), MAX_CHOICES);
        assert_eq!(
            serde_json::to_value(&choices[0]).unwrap(),
            json!({ "name": "app0 · /src/app0", "value": "/src/app0" })
        );
        assert_eq!(project_choices(&dirs, "blog").len(), 1);
        assert!(project_choices(&dirs, "xxx").is_empty(), "a path longer than a choice value is left out");
        assert_eq!(project_choices(&dirs, "").len(), MAX_CHOICES);
    }

    #[test]
    fn a_project_is_named_by_path_or_by_its_unique_name() {
        let dirs = vec!["/src/app".to_owned(), "/src/blog".to_owned(), "/old/blog".to_owned()];
        assert_eq!(resolve_project(&dirs, "/src/app/"), Some("/src/app"));
        assert_eq!(resolve_project(&dirs, "app"), Some("/src/app"));
        assert_eq!(resolve_project(&dirs, "blog"), None, "two projects are named blog");
        assert_eq!(resolve_project(&dirs, "/etc"), None);
        assert_eq!(resolve_project(&dirs, ".."), None);
    }

    #[test]
    fn session_lists_link_threads_and_never_ping() {
        let line = SessionLine {
            id: "0199c0de-session".into(),
            project: "@everyone".into(),
            host: "box".into(),
            thread_id: Some("42".into()),
            live: true,
        };
        let text = sessions_text("Sessions", &[line]);
        assert!(text.contains("<#42>") && text.contains("🟢 live") && !text.contains("@everyone"), "{text}");
        assert!(sessions_text("Sessions", &[]).contains("No sessions yet."));
    }
}
