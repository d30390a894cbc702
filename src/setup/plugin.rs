//! Linking the plugin into OMP: find the plugin directory this binary came
//! with (or `--plugin`), and run `omp plugin link` unless OMP installed it.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Options;
use super::ui::Ui;

/// The plugin directory: `--plugin`, else the package this binary came with
/// (a checkout's `target/release/`, or the npm platform package inside or next
/// to the installed plugin: `node_modules/omp-discord-linux-x64/bin/`).
fn plugin_dir(options: &Options) -> Option<PathBuf> {
    if let Some(dir) = &options.plugin {
        return Some(dir.clone());
    }
    let exe = std::env::current_exe().ok()?.canonicalize().ok()?;
    exe.ancestors()
        .skip(1)
        .take(6)
        .flat_map(|dir| {
            // The platform package hoisted next to the plugin package.
            let sibling = is_installed_package(dir).then(|| dir.with_file_name("omp-discord"));
            std::iter::once(dir.to_path_buf()).chain(sibling)
        })
        .find(|dir| is_plugin(dir))
}

/// Whether `dir` is an installed package (`omp plugin install` puts it in
/// OMP's `plugins/node_modules/`): linking it would replace it with a link to itself.
fn is_installed_package(dir: &Path) -> bool {
    dir.parent().and_then(Path::file_name).is_some_and(|name| name == "node_modules")
}

fn is_plugin(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("package.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|package| package["name"] == "omp-discord" && package["omp"]["extensions"].is_array())
}

/// Links the plugin into OMP, saying what happened (never fatal: setup goes on).
pub(super) fn link_plugin(ui: &Ui, options: &Options) {
    if options.no_plugin {
        return;
    }
    let Some(dir) = plugin_dir(options) else {
        ui.say(
            "the plugin directory was not found next to this binary; link it with `omp plugin link <dir>` (or \
                install the packages: see \"Installing without Rust\" in docs/setup.md)",
        );
        return;
    };
    if is_installed_package(&dir) {
        ui.say(format!("✓ the plugin is installed in OMP ({})", dir.display()));
        return;
    }
    let run = std::process::Command::new("omp")
        .args(["plugin", "link"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .output();
    match run {
        Ok(output) if output.status.success() => ui.say(format!("✓ linked the plugin {} into OMP", dir.display())),
        Ok(output) if String::from_utf8_lossy(&output.stderr).contains("already") => {
            ui.say(format!("✓ the plugin {} is already linked into OMP", dir.display()));
        }
        Ok(output) => ui.say(format!(
            "could not link the plugin ({}): {}; run `omp plugin link {}` yourself",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim(),
            dir.display()
        )),
        Err(err) => ui.say(format!(
            "`omp` is not on PATH ({err}); install OMP (`npm install -g @oh-my-pi/pi-coding-agent`) and run \
             `omp plugin link {}`",
            dir.display()
        )),
    }
}
