//! `omp-discord doctor`: checks everything a working setup needs, and says
//! for each problem what to do about it. Each check is `ok`, `warn` (works,
//! but something is off) or `FAIL` (something will not work).
//!
//! # Layout
//!
//! - this module: [`Check`], [`Report`], [`Environment`], [`run`] (every
//!   check, in order) and the configuration's own check.
//! - `discord`: the token, the home and project channels (permissions,
//!   forums), the intents, or the webhook, asked of Discord.
//! - `sidecar`: the socket directory's owner and mode, and the running sidecar's handshake.
//! - `omp`: the plugin link and OMP's timeout for approvals.

mod discord;
mod omp;
mod sidecar;

use std::fmt;
use std::path::PathBuf;

use crate::config::{Config, ConfigError};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but something is off.
    Warn,
    /// Will not work.
    Fail,
}

/// One finding.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked (a short word).
    pub name: &'static str,
    /// The verdict.
    pub level: Level,
    /// What was found, in one line.
    pub detail: String,
    /// What to do, for a warning or failure.
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Self { name, level: Level::Ok, detail: detail.into(), fix: None }
    }
    fn warn(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, level: Level::Warn, detail: detail.into(), fix: Some(fix.into()) }
    }
    fn fail(name: &'static str, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self { name, level: Level::Fail, detail: detail.into(), fix: Some(fix.into()) }
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Ok => "ok",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        write!(f, "{level:<5} {:<13} {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n{:<19} fix: {fix}", "")?;
        }
        Ok(())
    }
}

/// Every check, in order.
#[derive(Debug, Default)]
pub struct Report {
    /// The findings.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether any check failed (the command then exits non-zero).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.level == Level::Fail)
    }
}

/// Where doctor looks for things outside its own configuration.
#[derive(Debug, Clone)]
pub struct Environment {
    /// `PATH`, to find `omp`.
    pub path: Option<String>,
    /// `HOME`.
    pub home: Option<PathBuf>,
    /// `PI_CODING_AGENT_DIR` (OMP's agent directory override).
    pub omp_agent_dir: Option<PathBuf>,
    /// `PI_CONFIG_DIR` (OMP's config directory name under HOME, default `.omp`).
    pub omp_config_dir: Option<String>,
    /// `DISCORD_WEBHOOK_URL` is set (the webhook-only mode needs no bot token).
    pub webhook_mode: bool,
}

impl Environment {
    /// This process's environment.
    pub fn current() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            path: var("PATH"),
            home: var("HOME").map(PathBuf::from),
            omp_agent_dir: var("PI_CODING_AGENT_DIR").map(PathBuf::from),
            omp_config_dir: var("PI_CONFIG_DIR"),
            webhook_mode: var("DISCORD_WEBHOOK_URL").is_some(),
        }
    }
}

/// Runs every check. `config` is the result of loading the configuration.
pub async fn run(config: Result<Config, ConfigError>, env: &Environment) -> Report {
    let mut report = Report::default();
    let config = match config {
        Ok(config) => {
            report.checks.push(config_check(&config));
            config
        }
        Err(err) => {
            report.checks.push(Check::fail(
                "config",
                err.to_string(),
                "correct the value named above (docs/configuration.md lists every key), then run doctor again",
            ));
            // Without a configuration the remaining checks would only repeat this failure.
            return report;
        }
    };
    report.checks.extend(discord::checks(&config, env).await);
    report.checks.extend(sidecar::checks(&config.socket).await);
    report.checks.push(omp::plugin_check(env).await);
    report.checks.push(omp::timeout_check(&config, env));
    report
}

fn config_check(config: &Config) -> Check {
    let mut source = match &config.file {
        Some(path) => format!("{} read", path.display()),
        None => "no config file; settings come from the environment".to_owned(),
    };
    if let Some(filter) = &config.log {
        source.push_str(&format!(", log filter {filter:?}"));
    }
    if let Some(report) = config.report.as_object() {
        source.push_str(&format!(", [report] with {} keys", report.len()));
    }
    if config.warnings.is_empty() {
        Check::ok("config", source)
    } else {
        Check::warn(
            "config",
            format!("{source}; {}", config.warnings.join("; ")),
            "rename or remove the unknown keys (docs/configuration.md lists every key)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_print_their_fix() {
        let check = Check::fail("token", "refused", "reset it");
        assert_eq!(check.to_string(), "FAIL  token         refused\n                    fix: reset it");
        assert_eq!(Check::ok("socket", "private").to_string(), "ok    socket        private");
    }
}
