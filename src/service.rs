//! `omp-discord install-service` / `uninstall-service`: a systemd user unit
//! that keeps one sidecar running. The token reaches it through
//! `LoadCredential=` (from the configured token file) or an `EnvironmentFile=`
//! only the user can read — never through the unit or the command line.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{Config, SYSTEMD_CREDENTIAL, TokenSource, env};

/// The unit's name.
pub const UNIT_NAME: &str = "omp-discord.service";

/// Why the unit cannot be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// No token is configured, so the service could not reach Discord.
    #[error(
        "no bot token is configured: save it to a file, `chmod 600` it, set `token_file` in \
         ~/.config/omp-discord/config.toml (or OMP_DISCORD_TOKEN_FILE), then run install-service again"
    )]
    NoToken,
    /// Running inside the service already.
    #[error("the token comes from a systemd credential: run install-service from your own shell, not from the service")]
    InsideService,
    /// Neither `XDG_CONFIG_HOME` nor `HOME` is set.
    #[error("cannot place the unit: set HOME (or XDG_CONFIG_HOME)")]
    NoHome,
    /// A file could not be written or removed.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What `install-service` writes.
#[derive(Debug)]
pub struct Plan {
    /// `~/.config/systemd/user/omp-discord.service`.
    pub unit_path: PathBuf,
    /// The unit's text (no secrets).
    pub unit: String,
    /// The 0600 environment file holding the token, when the token came from the environment.
    pub env_file: Option<PathBuf>,
}

/// The user's config directory (`$XDG_CONFIG_HOME`, else `~/.config`).
fn config_home() -> Result<PathBuf, ServiceError> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    var("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| Path::new(&home).join(".config")))
        .ok_or(ServiceError::NoHome)
}

/// Where the unit goes.
///
/// # Errors
///
/// When neither `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn unit_path() -> Result<PathBuf, ServiceError> {
    Ok(config_home()?.join("systemd/user").join(UNIT_NAME))
}

/// Where the token's environment file goes, when one is needed.
///
/// # Errors
///
/// When neither `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn env_file_path() -> Result<PathBuf, ServiceError> {
    Ok(config_home()?.join("omp-discord/service.env"))
}

/// Quotes one `KEY=value` or path for a unit file line: systemd expands
/// `%` specifiers and splits on spaces, so both are escaped.
fn quote(value: &str) -> String {
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"").replace('%', "%%");
    if escaped.contains([' ', '\t', '"', '\\']) || escaped != value { format!("\"{escaped}\"") } else { escaped }
}

/// The unit for `config`, running `exe serve`. Settings that came from the
/// environment are carried into the unit (except the token), so the service
/// sees what this shell sees; settings from the config file stay there, so
/// editing the file and restarting the service is enough.
///
/// # Errors
///
/// [`ServiceError::NoToken`] without a token, [`ServiceError::InsideService`]
/// when run by the service itself, [`ServiceError::NoHome`] without a home.
pub fn plan(config: &Config, exe: &Path, env_var: &dyn Fn(&str) -> Option<String>) -> Result<Plan, ServiceError> {
    let mut unit = String::new();
    let _ = writeln!(unit, "# Written by `omp-discord install-service`; remove with `omp-discord uninstall-service`.");
    unit.push_str("[Unit]\nDescription=omp-discord: connects OMP sessions with Discord\n");
    unit.push_str("Wants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=simple\n");
    let _ = writeln!(unit, "ExecStart={} serve", quote(&exe.display().to_string()));
    unit.push_str(
        "Restart=on-failure\nRestartSec=5\n# The sidecar drains in-flight sends on SIGTERM.\nTimeoutStopSec=20\n",
    );
    unit.push_str("UMask=0077\nNoNewPrivileges=yes\n");
    let carried = [
        env::CONFIG,
        env::CHANNEL_ID,
        env::API_URL,
        env::GATEWAY_URL,
        env::SOCKET,
        env::STATE_DIR,
        env::THREADS,
        env::LOG,
        env::ALLOWED_USERS,
        env::ALLOWED_ROLES,
        env::APPROVAL_TIMEOUT,
        env::APPROVE_TOOLS,
    ];
    for name in carried {
        if let Some(value) = env_var(name).filter(|v| !v.trim().is_empty()) {
            let _ = writeln!(unit, "Environment={}", quote(&format!("{name}={value}")));
        }
    }
    // The socket must be where OMP's shims look: pin the one this shell resolves.
    if env_var(env::SOCKET).is_none() {
        let _ = writeln!(unit, "Environment={}", quote(&format!("{}={}", env::SOCKET, config.socket.display())));
    }
    let env_file = match &config.token_source {
        None => return Err(ServiceError::NoToken),
        Some(TokenSource::SystemdCredential(_)) => return Err(ServiceError::InsideService),
        Some(TokenSource::File(path)) => {
            let _ = writeln!(unit, "LoadCredential={SYSTEMD_CREDENTIAL}:{}", quote(&path.display().to_string()));
            None
        }
        Some(TokenSource::Env) => {
            let path = env_file_path()?;
            let _ = writeln!(unit, "EnvironmentFile={}", quote(&path.display().to_string()));
            Some(path)
        }
    };
    unit.push_str("\n[Install]\nWantedBy=default.target\n");
    Ok(Plan { unit_path: unit_path()?, unit, env_file })
}

/// Writes the unit and, when needed, the 0600 token environment file.
///
/// # Errors
///
/// When a directory or file cannot be written.
pub fn write(plan: &Plan, config: &Config) -> Result<(), ServiceError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| ServiceError::Io { path, source }
    };
    if let Some(dir) = plan.unit_path.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    std::fs::write(&plan.unit_path, &plan.unit).map_err(io(&plan.unit_path))?;
    if let (Some(path), Some(token)) = (&plan.env_file, &config.token) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        // Created 0600 before the token is written, and tightened if it existed.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(io(path))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
        writeln!(file, "{}={}", env::TOKEN, token.expose()).map_err(io(path))?;
    }
    Ok(())
}

/// The outcome of asking systemd.
#[derive(Debug)]
pub enum Systemd {
    /// Every command succeeded.
    Done,
    /// systemd could not be asked; the commands to run by hand, and why.
    Manual {
        /// Why it did not work here.
        reason: String,
        /// The commands to run.
        commands: Vec<String>,
    },
}

/// Runs `systemctl --user` with each argument list in turn.
pub fn systemctl(steps: &[&[&str]]) -> Systemd {
    let commands: Vec<String> = steps.iter().map(|args| format!("systemctl --user {}", args.join(" "))).collect();
    for (args, command) in steps.iter().zip(&commands) {
        let output = Command::new("systemctl").arg("--user").args(*args).output();
        let reason = match output {
            Ok(output) if output.status.success() => continue,
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                format!("`{command}` failed: {}", stderr.trim())
            }
            Err(err) => format!("cannot run systemctl: {err}"),
        };
        return Systemd::Manual { reason, commands };
    }
    Systemd::Done
}

/// Removes the unit and the token environment file; returns what was removed.
///
/// # Errors
///
/// When a file exists but cannot be removed.
pub fn remove() -> Result<Vec<PathBuf>, ServiceError> {
    let mut removed = Vec::new();
    for path in [unit_path()?, env_file_path()?] {
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(ServiceError::Io { path, source }),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_escapes_spaces_quotes_and_specifiers() {
        assert_eq!(quote("/usr/bin/omp-discord"), "/usr/bin/omp-discord");
        assert_eq!(quote("/opt/my tools/omp-discord"), "\"/opt/my tools/omp-discord\"");
        assert_eq!(quote("OMP_DISCORD_LOG=a%b"), "\"OMP_DISCORD_LOG=a%%b\"");
        assert_eq!(quote("X=\"y\""), "\"X=\\\"y\\\"\"");
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn assert<T: Send + Sync + std::error::Error>() {}
        assert::<ServiceError>();
    }
}
