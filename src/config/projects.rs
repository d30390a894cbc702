//! `[[projects]]` on disk: a configured path (`~/…` or absolute, maybe a
//! glob) becomes a matcher, and a matcher the directories it names now.

use std::path::PathBuf;

use omp_discord_core::projects::Project;
use twilight_model::id::Id;

use super::env::{EnvSource, get};
use super::file::ProjectEntry;
use super::{ConfigError, invalid};

/// The existing directories a `[[projects]]` path names (its glob expanded), sorted.
pub fn project_dirs(project: &Project) -> Vec<PathBuf> {
    glob::glob(project.path()).map(|paths| paths.flatten().filter(|p| p.is_dir()).collect()).unwrap_or_default()
}

/// Turns the configured project paths into matchers: `~/` becomes `$HOME/`;
/// other paths must be absolute.
pub(super) fn projects_from(configured: Vec<ProjectEntry>, env: EnvSource<'_>) -> Result<Vec<Project>, ConfigError> {
    const EXPECTED: &str = "an absolute directory or glob, or one starting with ~/";
    configured
        .into_iter()
        .map(|(path, channel)| {
            let key = "`path` in [[projects]]";
            let expanded = match path.strip_prefix("~/") {
                Some(rest) => {
                    let home = get(env, "HOME")
                        .ok_or(ConfigError::NoPlace { what: "a project path starting with ~/", hint: "HOME" })?;
                    format!("{}/{rest}", home.trim_end_matches('/'))
                }
                None if path.starts_with('/') => path.clone(),
                None => return Err(invalid(key, EXPECTED, &path)),
            };
            Project::new(&expanded, channel.map(Id::get)).map_err(|err| ConfigError::Invalid {
                key: key.to_owned(),
                expected: "a valid glob",
                found: format!("{path:?} ({err})"),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{load, setup};
    use super::*;

    #[test]
    fn projects_expand_home_and_route_sessions_to_their_channel() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src/app")).unwrap();
        std::fs::create_dir_all(dir.path().join("src/blog")).unwrap();
        let text = r#"
home_channel_id = "111"

[[projects]]
path = "~/src/app/"
channel_id = "222"

[[projects]]
path = "~/src/*"
colour = "red"
"#;
        let env = setup(dir.path(), text, &[]);
        let config = load(&env).unwrap();
        let home = dir.path().display().to_string();
        let paths: Vec<&str> = config.projects.iter().map(Project::path).collect();
        assert_eq!(paths, [format!("{home}/src/app"), format!("{home}/src/*")]);
        assert_eq!(config.channel_for(&format!("{home}/src/app/crates")), Some(Id::new(222)));
        assert_eq!(config.channel_for(&format!("{home}/src/blog")), Some(Id::new(111)), "no channel: the home one");
        assert_eq!(config.channel_for("/elsewhere"), Some(Id::new(111)));
        assert_eq!(project_dirs(&config.projects[1]), [dir.path().join("src/app"), dir.path().join("src/blog")]);
        assert!(
            config.warnings.iter().any(|w| w.contains("unknown key `colour` in `projects`")),
            "{:?}",
            config.warnings
        );
    }
}
