//! Where a session's messages go in Discord: one thread per OMP session in
//! the home channel, named after the project and the first prompt.

use crate::embed::{self, Level, MessagePayload, clean, limits};

/// OMP wraps context it adds to a prompt in these tags; they are not the user's words.
const REMINDER_OPEN: &str = "<system-reminder>";
const REMINDER_CLOSE: &str = "</system-reminder>";

/// The prompt as the user wrote it: system reminders removed, whitespace collapsed.
#[must_use]
pub fn user_words(prompt: &str) -> String {
    let mut text = String::with_capacity(prompt.len());
    let mut rest = prompt;
    while let Some(start) = rest.find(REMINDER_OPEN) {
        text.push_str(&rest[..start]);
        rest = match rest[start..].find(REMINDER_CLOSE) {
            Some(end) => &rest[start + end + REMINDER_CLOSE.len()..],
            None => "",
        };
    }
    text.push_str(rest);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `project · first prompt`, redacted and within Discord's 100-character thread name limit.
#[must_use]
pub fn thread_name(project: &str, prompt: Option<&str>) -> String {
    let project = if project.trim().is_empty() { "omp" } else { project.trim() };
    let words = prompt.map(user_words).filter(|w| !w.is_empty());
    let name = match words {
        Some(words) => format!("{project} · {words}"),
        None => format!("{project} · session"),
    };
    // Thread names are plain text: no markdown, but mentions and secrets still matter.
    clean(&name.replace(['\n', '\r'], " "), limits::THREAD_NAME)
}

/// The project's name: the last component of the working directory.
#[must_use]
pub fn project_name(cwd: Option<&str>) -> String {
    cwd.and_then(|cwd| cwd.trim_end_matches('/').rsplit('/').next())
        .filter(|name| !name.is_empty())
        .unwrap_or("omp")
        .to_owned()
}

/// The message that opens a session's thread in the home channel.
#[must_use]
pub fn session_starter(session_id: &str, cwd: Option<&str>, prompt: Option<&str>, host: &str) -> MessagePayload {
    let mut embed = embed::empty_embed(Level::Info);
    embed.title = Some(clean(&format!("Session · {}", project_name(cwd)), limits::TITLE));
    let words = prompt.map(user_words).filter(|w| !w.is_empty());
    embed.description = Some(clean(words.as_deref().unwrap_or("A new OMP session."), limits::DESCRIPTION));
    let mut fields = vec![twilight_model::channel::message::embed::EmbedField {
        name: "Session".into(),
        value: clean(&format!("`{session_id}`"), limits::FIELD_VALUE),
        inline: true,
    }];
    if !host.is_empty() {
        fields.push(twilight_model::channel::message::embed::EmbedField {
            name: "Host".into(),
            value: clean(host, limits::FIELD_VALUE),
            inline: true,
        });
    }
    if let Some(cwd) = cwd {
        fields.push(twilight_model::channel::message::embed::EmbedField {
            name: "Directory".into(),
            value: clean(&format!("`{cwd}`"), limits::FIELD_VALUE),
            inline: false,
        });
    }
    embed.fields = fields;
    embed.footer = Some(embed::footer(&project_name(cwd)));
    embed::single_embed(embed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reminders_are_not_part_of_the_name() {
        let prompt = "<system-reminder>date: today\ncwd: /x</system-reminder>\n  fix the\nflaky test ";
        assert_eq!(thread_name("api", Some(prompt)), "api · fix the flaky test");
    }

    #[test]
    fn names_fit_the_limit_with_multibyte_text() {
        let name = thread_name("projet", Some(&"é".repeat(300)));
        assert_eq!(name.chars().count(), limits::THREAD_NAME);
        assert!(name.ends_with(embed::TRUNCATION_MARKER));
    }

    #[test]
    fn names_are_redacted_and_never_ping() {
        let name = thread_name("p", Some("@everyone use ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"));
        assert!(!name.contains("ghp_0123") && !name.contains("@everyone"), "{name}");
    }

    #[test]
    fn project_is_the_last_directory() {
        assert_eq!(project_name(Some("/home/dev/api/")), "api");
        assert_eq!(project_name(None), "omp");
        assert_eq!(thread_name(" ", None), "omp · session");
    }

    #[test]
    fn starter_is_valid() {
        let starter = session_starter("s-1", Some("/w/api"), Some("do it"), "box");
        embed::validate_message(&starter).unwrap();
        assert_eq!(starter.embeds[0].title.as_deref(), Some("Session · api"));
    }
}
