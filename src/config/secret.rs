//! Secrets: the bot token and the webhook URL (which embeds a token), in
//! types whose `Debug` prints `<redacted>`, and where they are read from
//! (the environment, a 0600 file, or a systemd credential; never the config
//! file). Callers see the secret only through `expose`/`token`.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use twilight_model::id::Id;
use twilight_model::id::marker::WebhookMarker;

use super::env::{self, EnvSource, get};
use super::{ConfigError, parse_id};

/// A Discord bot token. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// The token, for the one place that sends it to Discord.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// A token someone pasted (setup's prompt), for checking and saving to a 0600 file.
pub fn token_from_secret(secret: String) -> Token {
    Token(secret.trim().to_owned())
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A channel webhook (`https://discord.com/api/webhooks/ID/TOKEN`), for the
/// webhook-only mode: no bot, no gateway. `Debug` never shows its token.
#[derive(Clone)]
pub struct Webhook {
    /// The webhook's id.
    pub id: Id<WebhookMarker>,
    token: Token,
}

impl Webhook {
    /// Parses a webhook URL as Discord shows it (any host, so an emulator's works too).
    ///
    /// # Errors
    ///
    /// When the URL has no `/webhooks/<id>/<token>` part. The error never repeats the URL.
    pub fn parse(key: &str, url: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::WebhookUrl { key: key.to_owned() };
        let (_, rest) = url.trim().split_once("/webhooks/").ok_or_else(invalid)?;
        let mut parts = rest.split(['/', '?', '#']);
        let id = parts.next().and_then(parse_id).ok_or_else(invalid)?;
        let token =
            parts.next().filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)));
        Ok(Self { id, token: Token(token.ok_or_else(invalid)?.to_owned()) })
    }

    /// The webhook's token, for the one place that sends it to Discord.
    pub fn token(&self) -> &str {
        self.token.expose()
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook").field("id", &self.id).field("token", &self.token).finish()
    }
}

/// Where the token came from (for `doctor` and `install-service`; never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `OMP_DISCORD_TOKEN`.
    Env,
    /// A token file (`OMP_DISCORD_TOKEN_FILE` or `token_file`).
    File(PathBuf),
    /// `$CREDENTIALS_DIRECTORY/omp-discord-token`, from systemd's `LoadCredential=`.
    SystemdCredential(PathBuf),
}

/// Name of the systemd credential (`LoadCredential=omp-discord-token:…`).
pub const SYSTEMD_CREDENTIAL: &str = "omp-discord-token";

/// Name of the systemd credential holding a webhook URL (`LoadCredential=omp-discord-webhook:…`).
const SYSTEMD_WEBHOOK_CREDENTIAL: &str = "omp-discord-webhook";

/// The token and where it came from: `OMP_DISCORD_TOKEN`, `OMP_DISCORD_TOKEN_FILE`,
/// a systemd credential, then the config file's `token_file`.
pub(super) fn read_token(
    env: EnvSource<'_>,
    file_token_file: Option<&Path>,
) -> Result<Option<(Token, TokenSource)>, ConfigError> {
    if let Some(token) = get(env, env::TOKEN) {
        return Ok(Some((Token(token.trim().to_owned()), TokenSource::Env)));
    }
    if let Some(path) = get(env, env::TOKEN_FILE) {
        let path = PathBuf::from(path);
        return Ok(Some((read_token_file(&path)?, TokenSource::File(path))));
    }
    if let Some(dir) = get(env, "CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(SYSTEMD_CREDENTIAL);
        if path.exists() {
            // systemd places credentials in a private directory with its own permissions.
            return Ok(Some((read_secret(&path)?, TokenSource::SystemdCredential(path))));
        }
    }
    if let Some(path) = file_token_file {
        return Ok(Some((read_token_file(path)?, TokenSource::File(path.to_owned()))));
    }
    Ok(None)
}

/// The webhook URL: `OMP_DISCORD_WEBHOOK_URL`, `OMP_DISCORD_WEBHOOK_FILE`, a
/// systemd credential, then the config file's `webhook_file`.
pub(super) fn read_webhook(
    env: EnvSource<'_>,
    file_webhook_file: Option<&Path>,
) -> Result<Option<Webhook>, ConfigError> {
    if let Some(url) = get(env, env::WEBHOOK_URL) {
        return Webhook::parse(env::WEBHOOK_URL, &url).map(Some);
    }
    let from_file = |path: &Path, secret: Token| Webhook::parse(&path.display().to_string(), secret.expose());
    if let Some(path) = get(env, env::WEBHOOK_FILE) {
        let path = PathBuf::from(path);
        return from_file(&path, read_token_file(&path)?).map(Some);
    }
    if let Some(dir) = get(env, "CREDENTIALS_DIRECTORY") {
        let path = Path::new(&dir).join(SYSTEMD_WEBHOOK_CREDENTIAL);
        if path.exists() {
            return from_file(&path, read_secret(&path)?).map(Some);
        }
    }
    file_webhook_file.map(|path| from_file(path, read_token_file(path)?)).transpose()
}

/// Reads a token file, refusing one that group or others can read.
///
/// # Errors
///
/// When the file is unreadable, empty, or has permissions wider than 0600.
fn read_token_file(path: &Path) -> Result<Token, ConfigError> {
    let mode = std::fs::metadata(path)
        .map_err(|source| ConfigError::TokenFile { path: path.to_owned(), source })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(ConfigError::TokenFileOpen { path: path.to_owned(), mode: mode & 0o777 });
    }
    read_secret(path)
}

/// Reads a secret from a file whose permissions someone else keeps (systemd).
fn read_secret(path: &Path) -> Result<Token, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ConfigError::TokenFile { path: path.to_owned(), source })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken { path: path.to_owned() });
    }
    Ok(Token(token.to_owned()))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::super::tests::{load, setup, token_file};
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let dir = tempfile::tempdir().unwrap();
        let env = setup(dir.path(), "", &[(env::TOKEN, "not-a-real-token")]);
        let config = load(&env).unwrap();
        assert_eq!(format!("{:?}", config.token.as_ref().unwrap()), "<redacted>");
        let debug = format!("{config:?}");
        assert!(debug.contains("token: Some(<redacted>)") && !debug.contains("not-a-real-token"), "{debug}");
    }

    #[test]
    fn token_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = token_file(dir.path(), 0o600);
        let credentials = dir.path().join("credentials");
        std::fs::create_dir(&credentials).unwrap();
        std::fs::write(credentials.join(SYSTEMD_CREDENTIAL), "credential-token\n").unwrap();
        let in_file = format!("token_file = \"{}\"", file.display());
        let credential = ("CREDENTIALS_DIRECTORY", credentials.to_str().unwrap());
        // The unit's credential beats the config file's token_file ...
        let config = load(&setup(dir.path(), &in_file, &[credential])).unwrap();
        assert_eq!(config.token.unwrap().expose(), "credential-token");
        assert!(matches!(config.token_source, Some(TokenSource::SystemdCredential(_))));
        // ... and the environment beats both.
        let env = setup(dir.path(), &in_file, &[credential, (env::TOKEN_FILE, file.to_str().unwrap())]);
        assert_eq!(load(&env).unwrap().token_source, Some(TokenSource::File(file.clone())));
        let env = setup(dir.path(), &in_file, &[credential, (env::TOKEN, "env-token")]);
        assert_eq!(load(&env).unwrap().token.unwrap().expose(), "env-token");
    }

    #[test]
    fn world_readable_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = token_file(dir.path(), 0o644);
        let err = read_token_file(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600") && !err.contains("fake-token"), "{err}");
        // Through the config file too.
        let env = setup(dir.path(), &format!("token_file = \"{}\"", path.display()), &[]);
        assert!(matches!(load(&env).unwrap_err(), ConfigError::TokenFileOpen { mode: 0o644, .. }));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token_file(&path).unwrap().expose(), "fake-token");
    }

    #[test]
    fn a_webhook_comes_from_env_or_a_private_file_and_never_prints_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let url = "https://discord.com/api/webhooks/123456789/fake-webhook_token?wait=true";
        let env = setup(dir.path(), "", &[(env::WEBHOOK_URL, url)]);
        let webhook = load(&env).unwrap().webhook.expect("a webhook");
        assert_eq!((webhook.id.get(), webhook.token()), (123_456_789, "fake-webhook_token"));
        assert!(!format!("{webhook:?}").contains("fake-webhook"), "{webhook:?}");

        let file = dir.path().join("webhook");
        std::fs::write(&file, format!("{url}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = setup(dir.path(), &format!("webhook_file = {:?}", file.display().to_string()), &[]);
        assert_eq!(load(&env).unwrap().webhook.unwrap().id.get(), 123_456_789);

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(load(&env).unwrap_err(), ConfigError::TokenFileOpen { .. }));
    }

    #[test]
    fn a_bad_or_inline_webhook_is_refused_without_being_repeated() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["https://discord.com/api/channels/1/fake-secret", "https://discord.com/api/webhooks/x/fake-secret"]
        {
            let env = setup(dir.path(), "", &[(env::WEBHOOK_URL, bad)]);
            let err = load(&env).unwrap_err().to_string();
            assert!(
                err.contains("OMP_DISCORD_WEBHOOK_URL is not a Discord webhook URL") && !err.contains("fake-secret")
            );
        }
        let env = setup(dir.path(), "webhook_url = \"https://discord.com/api/webhooks/1/fake-secret\"", &[]);
        let err = load(&env).unwrap_err();
        assert!(matches!(err, ConfigError::WebhookInFile { .. }) && !err.to_string().contains("fake-secret"));
    }
}
