//! The checks of OMP: the plugin is linked, enabled and built, and OMP lets
//! a `tool_call` handler wait as long as an approval may take.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::{Check, Environment};
use crate::config::Config;

/// `name` on `PATH`.
fn which(path: Option<&str>, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|dir| dir.join(name))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

/// Whether `omp plugin list` shows this plugin linked, enabled, built and of this version.
pub(super) async fn plugin_check(env: &Environment) -> Check {
    const NAME: &str = "plugin";
    let Some(omp) = which(env.path.as_deref(), "omp") else {
        return Check::warn(
            NAME,
            "`omp` is not on PATH, so the plugin link cannot be checked",
            "install OMP (`npm install -g @oh-my-pi/pi-coding-agent`), then run `omp plugin link <omp-discord checkout>`",
        );
    };
    let run = tokio::process::Command::new(&omp)
        .args(["plugin", "list", "--json"])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(Duration::from_secs(30), run).await {
        Ok(Ok(output)) if output.status.success() => output,
        Ok(Ok(output)) => {
            return Check::warn(
                NAME,
                format!("`omp plugin list --json` failed ({})", output.status),
                "run `omp plugin list` to see why",
            );
        }
        Ok(Err(err)) => {
            return Check::warn(NAME, format!("cannot run {}: {err}", omp.display()), "check your OMP install");
        }
        Err(_) => return Check::warn(NAME, "`omp plugin list --json` took longer than 30 s", "run it by hand"),
    };
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    let ours = listed["npm"].as_array().into_iter().flatten().find(|p| p["name"] == "omp-discord");
    match ours {
        None => Check::fail(
            NAME,
            "omp-discord is not linked into OMP: sessions will not report to Discord",
            "run `omp plugin link <path to your omp-discord checkout>` (after `scripts/build.sh`)",
        ),
        Some(plugin) if plugin["enabled"] == false => {
            Check::fail(NAME, "omp-discord is linked but disabled", "run `omp plugin enable omp-discord`")
        }
        Some(plugin) => {
            let version = plugin["version"].as_str().unwrap_or("?");
            let dir = Path::new(plugin["path"].as_str().unwrap_or_default());
            let extensions = plugin["manifest"]["extensions"].as_array().cloned().unwrap_or_default();
            let unbuilt: Vec<&str> =
                extensions.iter().filter_map(Value::as_str).filter(|e| !dir.join(e).is_file()).collect();
            if !unbuilt.is_empty() {
                return Check::fail(
                    NAME,
                    format!("omp-discord is linked from {}, but {} is not built", dir.display(), unbuilt.join(", ")),
                    format!("run `bash scripts/build.sh` in {}", dir.display()),
                );
            }
            if version == env!("CARGO_PKG_VERSION") {
                Check::ok(NAME, format!("omp-discord {version} is linked into OMP"))
            } else {
                Check::warn(
                    NAME,
                    format!("the linked plugin is {version}, this binary is {}", env!("CARGO_PKG_VERSION")),
                    "rebuild both from one checkout (`scripts/build.sh`) and run `omp-discord stop`",
                )
            }
        }
    }
}

/// The OMP setting that bounds `tool_call` handlers, and OMP's default for it.
const TIMEOUT_KEY: &str = "extensionHandlers.toolCallTimeoutMs";
const OMP_DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// Time on top of the approval timeout for the sidecar round trip.
const TIMEOUT_MARGIN: Duration = Duration::from_secs(60);

/// OMP's global settings file: `$PI_CODING_AGENT_DIR/config.yml`, else `~/.omp/agent/config.yml`
/// (`.omp` is `$PI_CONFIG_DIR` when set), as `@oh-my-pi/pi-utils/src/dirs.ts` resolves it.
fn omp_settings_file(env: &Environment) -> Option<PathBuf> {
    let dir = match &env.omp_agent_dir {
        Some(dir) => dir.clone(),
        None => env.home.as_ref()?.join(env.omp_config_dir.as_deref().unwrap_or(".omp")).join("agent"),
    };
    let yml = dir.join("config.yml");
    if !yml.exists() && dir.join("config.yaml").exists() {
        return Some(dir.join("config.yaml"));
    }
    Some(yml)
}

/// Reads `extensionHandlers.toolCallTimeoutMs` from OMP's YAML settings: the
/// nested block form OMP writes (`extensionHandlers:` then an indented
/// `toolCallTimeoutMs: N`), the flow form, or a dotted key.
fn read_tool_call_timeout(yaml: &str) -> Option<u64> {
    let number = |s: &str| s.trim().trim_matches(['"', '\'']).replace('_', "").parse::<f64>().ok().map(|n| n as u64);
    let mut in_block = false;
    for line in yaml.lines() {
        let content = line.split(" #").next().unwrap_or_default();
        let trimmed = content.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indented = content.starts_with([' ', '\t']);
        if !indented {
            in_block = false;
            if let Some(rest) = trimmed.strip_prefix(&format!("{TIMEOUT_KEY}:")) {
                return number(rest);
            }
            if let Some(rest) = trimmed.strip_prefix("extensionHandlers:") {
                let rest = rest.trim();
                if let Some(flow) = rest.strip_prefix('{') {
                    let flow = flow.trim_end_matches('}');
                    return flow.split(',').find_map(|kv| number(kv.trim().strip_prefix("toolCallTimeoutMs:")?));
                }
                in_block = rest.is_empty();
            }
        } else if in_block && let Some(rest) = trimmed.strip_prefix("toolCallTimeoutMs:") {
            return number(rest);
        }
    }
    None
}

/// Whether OMP's `tool_call` timeout covers the approval timeout.
pub(super) fn timeout_check(config: &Config, env: &Environment) -> Check {
    const NAME: &str = "omp timeout";
    let needed = (config.approval_timeout + TIMEOUT_MARGIN).as_millis() as u64;
    let file = omp_settings_file(env);
    let configured =
        file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()).and_then(|t| read_tool_call_timeout(&t));
    let fix = format!(
        "run `omp config set {TIMEOUT_KEY} {needed}`, or put `extensionHandlers:` with an indented \
         `toolCallTimeoutMs: {needed}` in {} (the approval timeout, {} s, plus {} s)",
        file.as_ref().map_or_else(|| "~/.omp/agent/config.yml".to_owned(), |f| f.display().to_string()),
        config.approval_timeout.as_secs(),
        TIMEOUT_MARGIN.as_secs()
    );
    match configured {
        None => Check::warn(
            NAME,
            format!(
                "{TIMEOUT_KEY} is not set, so OMP gives tool_call handlers {} s: an approval still waiting on \
                 Discord after that blocks the tool call",
                OMP_DEFAULT_TIMEOUT_MS / 1000
            ),
            fix,
        ),
        Some(ms) if ms < needed => Check::warn(
            NAME,
            format!(
                "{TIMEOUT_KEY} is {ms} ms, shorter than the approval timeout ({} s) plus {} s",
                config.approval_timeout.as_secs(),
                TIMEOUT_MARGIN.as_secs()
            ),
            fix,
        ),
        Some(ms) => Check::ok(
            NAME,
            format!("{TIMEOUT_KEY} is {ms} ms, enough for {} s approvals", config.approval_timeout.as_secs()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tool_call_timeout_is_read_from_omp_settings() {
        assert_eq!(read_tool_call_timeout("extensionHandlers:\n  toolCallTimeoutMs: 900000\n"), Some(900_000));
        assert_eq!(
            read_tool_call_timeout(
                "theme: dark\nextensionHandlers:\n  other: 1\n  toolCallTimeoutMs: 660_000 # ten\nx: 2"
            ),
            Some(660_000)
        );
        assert_eq!(read_tool_call_timeout("extensionHandlers: { toolCallTimeoutMs: 5000 }"), Some(5000));
        assert_eq!(read_tool_call_timeout("extensionHandlers.toolCallTimeoutMs: 7000"), Some(7000));
        assert_eq!(read_tool_call_timeout("other:\n  toolCallTimeoutMs: 1\n"), None);
        assert_eq!(read_tool_call_timeout(""), None);
    }
}
