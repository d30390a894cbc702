//! Where a session's messages go in Discord: one thread per OMP session in
//! the home channel, named after the project and the first prompt. The
//! thread opens under [`crate::templates::session_started`].

use crate::embed::{clean, limits};
use crate::format::strip_system_reminders;

/// `project · first prompt`, redacted and within Discord's 100-character
/// thread-name limit; OMP's system reminders and line breaks are left out.
#[must_use]
pub fn thread_name(project: &str, prompt: Option<&str>) -> String {
    let project = if project.trim().is_empty() { "omp" } else { project.trim() };
    let words = prompt
        .map(|p| strip_system_reminders(p).split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|w| !w.is_empty());
    let name = match words {
        Some(words) => format!("{project} · {words}"),
        None => format!("{project} · session"),
    };
    // Thread names are plain text: no markdown, but mentions and secrets still matter.
    clean(&name.replace(['\n', '\r'], " "), limits::THREAD_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed;

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
        let name = thread_name("p", Some("@everyone use ghp_0123456789abcdefghijklmnopqrstuvwxyzAB")); // fake, made-up token
        assert!(!name.contains("ghp_0123") && !name.contains("@everyone"), "{name}");
    }

    #[test]
    fn an_empty_project_and_prompt_still_name_the_thread() {
        assert_eq!(thread_name(" ", None), "omp · session");
        assert_eq!(thread_name("api", Some("<system-reminder>x</system-reminder>")), "api · session");
    }
}
