//! The web view at `/`: guilds, channels, threads and messages laid out like Discord.

use axum::response::Html;

/// The single-page view; it reads `/_emulator/state` and posts to the control API.
pub(crate) async fn page() -> Html<&'static str> {
    Html(include_str!("web.html"))
}
