//! The config file: TOML parsed into [`FileSettings`], each value checked
//! and each error naming the key and the file. Unknown keys are warnings
//! (with the closest known key); a token or webhook URL in the file is an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use omp_discord_core::inbound::RateLimit;
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, RoleMarker, UserMarker};

use super::env::directive_value;
use super::{ApiBase, ConfigError, RATE_LIMIT_FORM, invalid, parse_api, parse_id};

/// The keys a config file may hold (besides `[report]`, which is passed on as written).
const FILE_KEYS: &[&str] = &[
    "token_file",
    "webhook_file",
    "home_channel_id",
    "api_url",
    "gateway_url",
    "socket",
    "state_dir",
    "threads",
    "log",
    "allowed_users",
    "allowed_roles",
    "approval_timeout_secs",
    "approve_tools",
    "steer_prefix",
    "abort_command",
    "inbound_rate_limit",
    "ask_command",
    "report",
    "projects",
];

/// The keys of one `[[projects]]` entry.
const PROJECT_KEYS: &[&str] = &["path", "channel_id"];

/// A malformed TOML value, described by its kind unless it is a string.
fn invalid_toml(key: &str, expected: &'static str, found: &toml::Value) -> ConfigError {
    let found = match found {
        toml::Value::String(s) => return invalid(key, expected, s),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(_) => "a list".to_owned(),
        toml::Value::Table(_) => "a table".to_owned(),
    };
    ConfigError::Invalid { key: key.to_owned(), expected, found }
}

/// The config file's settings, checked but not yet merged with the environment.
#[derive(Debug, Default)]
pub(super) struct FileSettings {
    pub(super) token_file: Option<PathBuf>,
    pub(super) webhook_file: Option<PathBuf>,
    pub(super) home_channel: Option<Id<ChannelMarker>>,
    pub(super) api: Option<ApiBase>,
    pub(super) gateway_url: Option<String>,
    pub(super) socket: Option<PathBuf>,
    pub(super) state_dir: Option<PathBuf>,
    pub(super) threads: Option<bool>,
    pub(super) log: Option<String>,
    pub(super) allowed_users: Option<Vec<Id<UserMarker>>>,
    pub(super) allowed_roles: Option<Vec<Id<RoleMarker>>>,
    pub(super) approval_timeout: Option<Duration>,
    pub(super) approve_tools: Option<Vec<String>>,
    pub(super) steer_prefix: Option<String>,
    pub(super) abort_command: Option<String>,
    pub(super) inbound_rate_limit: Option<Option<RateLimit>>,
    pub(super) ask_command: Option<Vec<String>>,
    pub(super) report: serde_json::Value,
    pub(super) projects: Vec<ProjectEntry>,
    pub(super) warnings: Vec<String>,
}

impl FileSettings {
    /// Reads `path`; a missing file is an empty configuration.
    pub(super) fn read(path: &Path) -> Result<Option<Self>, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text).map(Some),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::ReadFile { path: path.to_owned(), source }),
        }
    }

    /// Checks `text`, the contents of `path`, key by key.
    fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let table: toml::Table = text.parse().map_err(|err: toml::de::Error| ConfigError::Syntax {
            path: path.to_owned(),
            // The parser's message quotes the offending line, which could hold a token: keep its first line.
            message: err.message().lines().next().unwrap_or_default().to_owned() + &line_of(text, err.span()),
        })?;
        if table.contains_key("token") || table.contains_key("bot_token") {
            return Err(ConfigError::TokenInFile { path: path.to_owned() });
        }
        if table.contains_key("webhook_url") {
            return Err(ConfigError::WebhookInFile { path: path.to_owned() });
        }
        let mut settings = Self::default();
        let file = path.display();
        for (key, value) in &table {
            let name = format!("`{key}` in {file}");
            let text = |expected| match value {
                toml::Value::String(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
                other => Err(invalid_toml(&name, expected, other)),
            };
            match key.as_str() {
                "token_file" => settings.token_file = Some(PathBuf::from(text("a path to the token file")?)),
                "webhook_file" => settings.webhook_file = Some(PathBuf::from(text("a path to the webhook URL file")?)),
                "home_channel_id" => {
                    settings.home_channel = Some(id_from_toml(&name, value, "a channel id such as \"1234567890\"")?);
                }
                "api_url" => {
                    settings.api =
                        Some(parse_api(&name, Some(&text("a bare origin such as \"https://discord.com\"")?))?);
                }
                "gateway_url" => settings.gateway_url = Some(text("a URL such as \"wss://gateway.discord.gg\"")?),
                "socket" => settings.socket = Some(PathBuf::from(text("a path")?)),
                "state_dir" => settings.state_dir = Some(PathBuf::from(text("a path")?)),
                "threads" => match value {
                    toml::Value::Boolean(on) => settings.threads = Some(*on),
                    other => return Err(invalid_toml(&name, "true or false", other)),
                },
                "log" => settings.log = Some(text("a log filter such as \"warn\" or \"omp_discord=debug\"")?),
                "allowed_users" => settings.allowed_users = Some(ids_from_toml(&name, value)?),
                "allowed_roles" => settings.allowed_roles = Some(ids_from_toml(&name, value)?),
                "approval_timeout_secs" => match value {
                    toml::Value::Integer(secs) if *secs > 0 => {
                        settings.approval_timeout = Some(Duration::from_secs(secs.unsigned_abs()));
                    }
                    other => return Err(invalid_toml(&name, "a positive number of seconds", other)),
                },
                "approve_tools" => match value {
                    toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => {
                        settings.approve_tools =
                            Some(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
                    }
                    other => return Err(invalid_toml(&name, "a list of tool names such as [\"bash\"]", other)),
                },
                "steer_prefix" | "abort_command" => {
                    let toml::Value::String(raw) = value else {
                        return Err(invalid_toml(
                            &name,
                            "a string such as \"!\" (\"\" or \"off\" turns it off)",
                            value,
                        ));
                    };
                    let directive = Some(directive_value(raw));
                    if key == "steer_prefix" {
                        settings.steer_prefix = directive;
                    } else {
                        settings.abort_command = directive;
                    }
                }
                "ask_command" => match value {
                    toml::Value::Array(items)
                        if !items.is_empty() && items.iter().all(|v| v.as_str().is_some_and(|s| !s.is_empty())) =>
                    {
                        settings.ask_command =
                            Some(items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
                    }
                    other => {
                        return Err(invalid_toml(&name, "a command as a list of arguments, such as [\"omp\"]", other));
                    }
                },
                "inbound_rate_limit" => {
                    settings.inbound_rate_limit = Some(match value {
                        toml::Value::String(raw) => {
                            RateLimit::parse(raw).map_err(|_| invalid_toml(&name, RATE_LIMIT_FORM, value))?
                        }
                        other => return Err(invalid_toml(&name, RATE_LIMIT_FORM, other)),
                    });
                }
                "report" => match value {
                    toml::Value::Table(_) => {
                        settings.report = serde_json::to_value(value).map_err(|_| {
                            invalid_toml(&name, "a table without dates (dates cannot be passed on)", value)
                        })?;
                    }
                    other => return Err(invalid_toml(&name, "a table (`[report]`)", other)),
                },
                "projects" => settings.projects = projects_from_toml(&name, value, &mut settings.warnings)?,
                unknown => {
                    // A pasted token can end up as a key; the warning is shown by `status`.
                    let unknown = &*omp_discord_core::redact::redact_text(unknown);
                    let hint = closest(unknown).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
                    settings.warnings.push(format!("unknown key `{unknown}` in {file} is ignored{hint}"));
                }
            }
        }
        Ok(settings)
    }
}

/// ` (line N)` for an error span, or nothing.
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    span.map(|span| format!(" (line {})", text[..span.start.min(text.len())].lines().count().max(1)))
        .unwrap_or_default()
}

/// The known key a typo most likely meant.
fn closest(unknown: &str) -> Option<&'static str> {
    let distance = |a: &str, b: &str| {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut previous = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let current = row[j + 1];
                row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
                previous = current;
            }
        }
        row[b.len()]
    };
    FILE_KEYS.iter().map(|k| (distance(unknown, k), *k)).filter(|(d, _)| *d <= 3).min().map(|(_, k)| k)
}

/// One `[[projects]]` entry as written: the path (maybe `~/…`) and the channel.
pub(super) type ProjectEntry = (String, Option<Id<ChannelMarker>>);

/// Reads `[[projects]]`: a list of tables with a `path` and an optional `channel_id`.
fn projects_from_toml(
    key: &str,
    value: &toml::Value,
    warnings: &mut Vec<String>,
) -> Result<Vec<ProjectEntry>, ConfigError> {
    const EXPECTED: &str = "a list of tables such as [[projects]] path = \"~/src/*\" channel_id = \"123\"";
    let toml::Value::Array(items) = value else { return Err(invalid_toml(key, EXPECTED, value)) };
    let mut projects = Vec::with_capacity(items.len());
    for (n, item) in items.iter().enumerate() {
        let toml::Value::Table(table) = item else { return Err(invalid_toml(key, EXPECTED, item)) };
        let entry = format!("{key} (entry {})", n + 1);
        let path = match table.get("path") {
            Some(toml::Value::String(path)) if !path.trim().is_empty() => path.trim().to_owned(),
            Some(other) => return Err(invalid_toml(&entry, "`path`: a directory or glob such as \"~/src/*\"", other)),
            None => return Err(invalid(&entry, "a `path` such as \"~/src/*\"", "no path")),
        };
        let channel = match table.get("channel_id") {
            Some(value) => Some(id_from_toml(&entry, value, "`channel_id`: a channel id such as \"1234567890\"")?),
            None => None,
        };
        for unknown in table.keys().filter(|k| !PROJECT_KEYS.contains(&k.as_str())) {
            let unknown = omp_discord_core::redact::redact_text(unknown);
            warnings.push(format!("unknown key `{unknown}` in {entry} is ignored (known: path, channel_id)"));
        }
        projects.push((path, channel));
    }
    Ok(projects)
}

/// A Discord id written as a string or an integer.
fn id_from_toml<T>(key: &str, value: &toml::Value, expected: &'static str) -> Result<Id<T>, ConfigError> {
    let id = match value {
        toml::Value::String(s) => parse_id(s),
        toml::Value::Integer(n) => u64::try_from(*n).ok().and_then(Id::new_checked),
        _ => None,
    };
    id.ok_or_else(|| invalid_toml(key, expected, value))
}

/// A list of Discord ids.
fn ids_from_toml<T>(key: &str, value: &toml::Value) -> Result<Vec<Id<T>>, ConfigError> {
    const EXPECTED: &str = "a list of Discord ids as strings, such as [\"1234567890\"]";
    match value {
        toml::Value::Array(items) => items.iter().map(|item| id_from_toml(key, item, EXPECTED)).collect(),
        other => Err(invalid_toml(key, EXPECTED, other)),
    }
}

#[cfg(test)]
mod tests {
    use super::super::env;
    use super::super::tests::{load, setup};
    use super::*;

    /// The first-column keys of the table after `heading` in docs/configuration.md.
    fn documented_keys(heading: &str) -> Vec<String> {
        let docs = include_str!("../../docs/configuration.md");
        let table = &docs[docs.find(heading).expect("the heading")..];
        table
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|row| row.strip_prefix("| `")?.split('`').next())
            .map(|key| key.trim_matches(['[', ']']).to_owned())
            .collect()
    }

    #[test]
    fn the_documented_keys_are_the_parsed_keys() {
        let mut documented = documented_keys("## Keys");
        documented.sort();
        let mut parsed: Vec<String> = FILE_KEYS.iter().map(|k| (*k).to_owned()).collect();
        parsed.sort();
        assert_eq!(documented, parsed, "docs/configuration.md's key table and FILE_KEYS differ");
        assert_eq!(documented_keys("## Projects and several servers\n"), PROJECT_KEYS);
    }

    #[test]
    fn broken_projects_say_what_to_write() {
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in [
            ("projects = \"~/src\"", "a list of tables"),
            ("[[projects]]\nchannel_id = \"1\"", "a `path`"),
            ("[[projects]]\npath = \"src/*\"", "an absolute directory or glob"),
            ("[[projects]]\npath = \"/src/[x\"", "a valid glob"),
            ("[[projects]]\npath = \"/src\"\nchannel_id = \"#general\"", "a channel id"),
        ] {
            let env = setup(dir.path(), text, &[]);
            let err = load(&env).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_warnings_that_name_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let env = setup(dir.path(), "home_chanel_id = \"1\"\ncolour = \"red\"\n", &[]);
        let config = load(&env).unwrap();
        assert_eq!(config.warnings.len(), 2, "{:?}", config.warnings);
        let all = config.warnings.join("\n");
        assert!(
            all.contains("unknown key `home_chanel_id`") && all.contains("did you mean `home_channel_id`?"),
            "{all}"
        );
        assert!(all.contains("unknown key `colour`"), "{all}");
        assert_eq!(config.home_channel, None);
    }

    #[test]
    fn malformed_values_name_the_key_and_the_expected_form() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("home_channel_id = \"#general\"", "`home_channel_id` in", "a channel id"),
            ("threads = \"maybe\"", "`threads` in", "true or false"),
            ("allowed_users = \"123\"", "`allowed_users` in", "a list of Discord ids"),
            ("allowed_roles = [\"x\"]", "`allowed_roles` in", "a list of Discord ids"),
            ("api_url = \"discord.com\"", "`api_url` in", "a bare origin"),
            ("approval_timeout_secs = 0", "`approval_timeout_secs` in", "a positive number of seconds"),
            ("report = 3", "`report` in", "a table"),
            ("threads = ", "is not valid TOML", "line 1"),
        ];
        for (text, key, expected) in cases {
            let env = setup(dir.path(), text, &[]);
            let err = load(&env).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains(expected), "{text}: {err}");
        }
        let env = setup(dir.path(), "", &[(env::THREADS, "maybe")]);
        assert_eq!(load(&env).unwrap_err().to_string(), "OMP_DISCORD_THREADS must be on or off, not \"maybe\"");
        let env = setup(dir.path(), "", &[(env::ALLOWED_USERS, "1,bob")]);
        let err = load(&env).unwrap_err().to_string();
        assert!(err.starts_with("OMP_DISCORD_ALLOWED_USERS must be a comma-separated list"), "{err}");
        let env = setup(dir.path(), "", &[(env::CHANNEL_ID, "0")]);
        assert!(load(&env).unwrap_err().to_string().starts_with("OMP_DISCORD_CHANNEL_ID must be a channel id"));
    }

    #[test]
    fn a_token_in_the_file_is_refused_without_being_repeated() {
        let dir = tempfile::tempdir().unwrap();
        for text in ["token = \"sekrit-token-value\"", "bot_token = \"sekrit-token-value\""] {
            let env = setup(dir.path(), text, &[]);
            let err = load(&env).unwrap_err();
            assert!(matches!(err, ConfigError::TokenInFile { .. }), "{err:?}");
            let text = err.to_string();
            assert!(text.contains("token_file = ") && !text.contains("sekrit"), "{text}");
        }
        // A syntax error on the token's line does not quote it either.
        let env = setup(dir.path(), "token_file = \"/x\"\ntoken = sekrit-token-value\n", &[]);
        let err = load(&env).unwrap_err().to_string();
        assert!(err.contains("line 2") && !err.contains("sekrit"), "{err}");
    }
}

#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    /// Fake tokens of the shapes people paste: a GitHub token (exactly 40
    /// characters) and a Discord bot token.
    const TOKENS: &[&str] = &[
        "ghp_FAKEq8ZK2mVx0pLr7TyN4bWs1Ue6Ih3Co5Ad", // fake, made-up token
        "MTEwMDAwMDAwMDAwMDAwMTAw.FAKEaa.q8ZK2mVx0pLr7TyN4bWs1Ue6Ih3Co5AdQ9", // fake, made-up token
    ];

    fn toml_text() -> impl Strategy<Value = String> {
        let token = prop::sample::select(TOKENS);
        let key = prop::sample::select(vec![
            "home_channel_id",
            "token_file",
            "api_url",
            "gateway_url",
            "threads",
            "log",
            "allowed_users",
            "allowed_roles",
            "approval_timeout_secs",
            "approve_tools",
            "report",
            "socket",
        ]);
        let line = prop_oneof![
            (key.clone(), token.clone()).prop_map(|(k, t)| format!("{k} = \"{t}\"\n")),
            (key.clone(), token.clone()).prop_map(|(k, t)| format!("{k} = {t}\n")),
            (key.clone(), token.clone()).prop_map(|(k, t)| format!("{k} = [\"{t}\", 1]\n")),
            (key.clone(), token.clone()).prop_map(|(k, t)| format!("[{k}]\nx = \"{t}\"\n")),
            token.clone().prop_map(|t| format!("{t}\n")),
            token.clone().prop_map(|t| format!("\"{t}\" = 1\n")),
            token.clone().prop_map(|t| format!("{t} = \"x\"\n")),
            token.prop_map(|t| format!("log = \"{t}\n")),
            (key, "[ -~]{0,20}").prop_map(|(k, v)| format!("{k} = {v}\n")),
            "[ -~\\n]{0,40}",
            any::<String>(),
        ];
        prop::collection::vec(line, 0..6).prop_map(|lines| lines.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text parses or fails with an error; neither the error nor a
        /// warning repeats a token from the file.
        #[test]
        fn no_panic_and_no_token_in_errors(text in toml_text()) {
            let path = Path::new("/cfg/config.toml");
            let shown = match FileSettings::parse(path, &text) {
                Ok(settings) => settings.warnings.join("\n"),
                Err(err) => err.to_string(),
            };
            for token in TOKENS {
                // A Discord token's first part is the bot's public id; its last part is the secret.
                let secret = token.rsplit('.').next().unwrap_or(token);
                prop_assert!(!shown.contains(secret), "{shown:?} shows a token from {text:?}");
            }
        }
    }
}
