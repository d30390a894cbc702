//! Project directories from the configuration (`[[projects]]`): which
//! channel a session's thread goes to, and where `/omp ask` may start work.
//!
//! A project's `path` is a directory or a glob (`*`, `?`, `[...]`; `*` stays
//! within one path component, `**` spans several). A session belongs to the
//! first project, in configuration order, whose path matches its working
//! directory or one of that directory's parents: `~/src/*` takes a session
//! started in `~/src/app/crates/core`.
//!
//! ```
//! use omp_discord_core::projects::Project;
//!
//! let projects = [
//!     Project::new("/home/me/src/secret-app", Some(7)).unwrap(),
//!     Project::new("/home/me/src/*", Some(9)).unwrap(),
//! ];
//! assert_eq!(Project::channel_for(&projects, "/home/me/src/secret-app/web"), Some(7));
//! assert_eq!(Project::channel_for(&projects, "/home/me/src/blog"), Some(9));
//! assert_eq!(Project::channel_for(&projects, "/tmp"), None);
//! ```

use std::path::Path;

use glob::{MatchOptions, Pattern, PatternError};

/// `*` and `?` never cross a `/`; hidden directories match like any other.
const MATCH: MatchOptions =
    MatchOptions { case_sensitive: true, require_literal_separator: true, require_literal_leading_dot: false };

/// One `[[projects]]` entry: a directory (or glob) and where its sessions report.
#[derive(Debug, Clone)]
pub struct Project {
    pattern: Pattern,
    /// The channel its sessions' threads open in, instead of the home channel.
    pub channel: Option<u64>,
}

impl PartialEq for Project {
    fn eq(&self, other: &Self) -> bool {
        self.pattern.as_str() == other.pattern.as_str() && self.channel == other.channel
    }
}

impl Eq for Project {}

impl Project {
    /// A project at `path` (absolute, `~` already expanded), reporting to `channel`.
    ///
    /// # Errors
    ///
    /// When `path` is not a valid glob (an unclosed `[`, a `***`).
    pub fn new(path: &str, channel: Option<u64>) -> Result<Self, PatternError> {
        let trimmed = if path.len() > 1 { path.trim_end_matches('/') } else { path };
        Ok(Self { pattern: Pattern::new(trimmed)?, channel })
    }

    /// The path or glob as configured (without a trailing `/`).
    #[must_use]
    pub fn path(&self) -> &str {
        self.pattern.as_str()
    }

    /// Whether a session working in `cwd` belongs to this project: `cwd` or
    /// one of its parents matches.
    #[must_use]
    pub fn contains(&self, cwd: &str) -> bool {
        Path::new(cwd).ancestors().any(|dir| self.pattern.matches_path_with(dir, MATCH))
    }

    /// The first project of `projects` that `cwd` belongs to.
    #[must_use]
    pub fn find<'a>(projects: &'a [Self], cwd: &str) -> Option<&'a Self> {
        projects.iter().find(|p| p.contains(cwd))
    }

    /// The channel a session working in `cwd` reports to, when its project names one.
    #[must_use]
    pub fn channel_for(projects: &[Self], cwd: &str) -> Option<u64> {
        Self::find(projects, cwd).and_then(|p| p.channel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(path: &str) -> Project {
        Project::new(path, Some(1)).unwrap()
    }

    #[test]
    fn a_directory_contains_itself_and_everything_below() {
        let p = project("/src/app/");
        assert_eq!(p.path(), "/src/app");
        assert!(p.contains("/src/app"));
        assert!(p.contains("/src/app/crates/core"));
        assert!(!p.contains("/src/application"), "a name prefix is not a parent");
        assert!(!p.contains("/src"));
        assert!(!p.contains("relative/src/app"));
    }

    #[test]
    fn a_star_stays_within_one_component() {
        let p = project("/src/*");
        assert!(p.contains("/src/app") && p.contains("/src/app/deep/down") && p.contains("/src/.hidden"));
        assert!(!p.contains("/src"));
        let deep = project("/work/**/svc-*");
        assert!(deep.contains("/work/a/b/svc-x/src"));
        assert!(!deep.contains("/work/a/b/api"));
    }

    #[test]
    fn the_first_matching_project_wins() {
        let projects = [Project::new("/src/app", None).unwrap(), Project::new("/src/*", Some(9)).unwrap()];
        assert_eq!(Project::find(&projects, "/src/app/x").map(Project::path), Some("/src/app"));
        assert_eq!(Project::channel_for(&projects, "/src/app/x"), None, "the first match names no channel");
        assert_eq!(Project::channel_for(&projects, "/src/other"), Some(9));
    }

    #[test]
    fn invalid_globs_are_errors() {
        assert!(Project::new("/src/[abc", None).is_err());
        assert!(Project::new("/src/***", None).is_err());
    }
}
