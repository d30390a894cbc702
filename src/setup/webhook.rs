//! The webhook wizard: a webhook URL (from the environment, the current
//! configuration or a paste), checked against Discord with a test message,
//! then saved to a 0600 file named by `webhook_file`.

use std::path::Path;

use omp_discord_core::embed::MessagePayload;
use serde_json::Value;
use twilight_http::routing::Route;

use super::ui::Ui;
use super::{Problem, env_var, refused, remember_api, write_private};
use crate::config::{self, ApiBase, Config, Webhook};
use crate::discord::{Discord, SendError};

/// Sets up the webhook-only mode into `table`; a pasted URL goes to a 0600 file in `dir`.
pub(super) async fn webhook_path(
    ui: &Ui,
    existing: Option<&Config>,
    dir: &Path,
    table: &mut toml::Table,
) -> Result<(), Problem> {
    let copy = "in Discord open the channel's settings → Integrations → Webhooks → New Webhook → Copy Webhook URL";
    let url = match env_var(config::env::WEBHOOK_URL) {
        Some(url) => url,
        None if existing.is_some_and(|c| c.webhook.is_some())
            && (!ui.interactive || ui.confirm("Keep the webhook configured now?", true)) =>
        {
            let webhook = existing.and_then(|c| c.webhook.clone()).expect("checked above");
            return finish_webhook(ui, existing, dir, table, &webhook, None).await;
        }
        None if ui.interactive => {
            ui.say(format!("Paste the webhook URL ({copy}). It is not shown while you type."));
            ui.secret("webhook URL: ")
        }
        None => {
            return Err(Problem::new(
                "no webhook URL: --non-interactive takes it from OMP_DISCORD_WEBHOOK_URL",
                format!("{copy}, then export OMP_DISCORD_WEBHOOK_URL with it and run setup again"),
            ));
        }
    };
    let webhook = Webhook::parse("the webhook URL", &url).map_err(|err| Problem::new(err.to_string(), copy))?;
    finish_webhook(ui, existing, dir, table, &webhook, Some(&url)).await
}

/// Checks `webhook` against Discord and posts a test message through it;
/// `url`, when new, is saved.
async fn finish_webhook(
    ui: &Ui,
    existing: Option<&Config>,
    dir: &Path,
    table: &mut toml::Table,
    webhook: &Webhook,
    url: Option<&str>,
) -> Result<(), Problem> {
    let api_base = match env_var(config::env::API_URL) {
        Some(raw) => ApiBase::parse(Some(&raw)).map_err(|e| Problem::new(e.to_string(), "fix OMP_DISCORD_API_URL"))?,
        None => existing.map(|c| c.api.clone()).unwrap_or(ApiBase { proxy: None, plain_http: false }),
    };
    let api = Discord::interactive(None, &api_base);
    let gone = || {
        Problem::new(
            format!("Discord does not know this webhook ({}): it was deleted, or the URL is incomplete", webhook.id),
            "create a webhook again (channel settings → Integrations → Webhooks → New Webhook → Copy Webhook URL) \
             and run setup again with it",
        )
    };
    let found: Value =
        match api.get_json(&Route::GetWebhook { token: Some(webhook.token()), webhook_id: webhook.id.get() }).await {
            Ok(found) => found,
            Err(SendError::Rejected { status: 401 | 404, .. } | SendError::Unauthorized) => return Err(gone()),
            Err(err) => return Err(refused(err, "checking the webhook")),
        };
    ui.say(format!(
        "✓ webhook {:?} posts to channel {}",
        found["name"].as_str().unwrap_or("?"),
        found["channel_id"].as_str().unwrap_or("?")
    ));
    let text = format!("✅ omp-discord is set up: OMP sessions on {} notify here.", crate::client::hostname());
    let message = MessagePayload { content: Some(text), ..Default::default() };
    let (_, sent) = match api.execute_webhook(webhook, &message).await {
        Ok(sent) => sent,
        Err(SendError::Rejected { status: 401 | 404, .. } | SendError::Unauthorized) => return Err(gone()),
        Err(err) => return Err(refused(err, "posting the test message through the webhook")),
    };
    ui.say(format!("✓ test message {sent} posted through the webhook"));
    if let Some(url) = url {
        let path = dir.join("webhook");
        write_private(&path, &format!("{}\n", url.trim()))?;
        ui.say(format!("wrote the webhook URL to {} (mode 0600)", path.display()));
        table.insert("webhook_file".into(), toml::Value::String(path.display().to_string()));
    }
    remember_api(table);
    Ok(())
}
