//! Answers to interactions (clicks, modals, `/omp`, autocomplete) as
//! twilight-model's `InteractionResponse`: each text cut to Discord's
//! limit, and never pinging anyone.

use omp_discord_core::embed::{MessagePayload, clean, limits};
use twilight_model::application::command::CommandOptionChoice;
use twilight_model::application::interaction::Interaction;
use twilight_model::channel::message::{AllowedMentions, Component, MessageFlags};
use twilight_model::http::interaction::{InteractionResponse, InteractionResponseData, InteractionResponseType};

use super::Sidecar;

/// A message with `text`, visible to everyone in the channel.
pub(super) fn public(text: &str) -> InteractionResponse {
    InteractionResponse { kind: InteractionResponseType::ChannelMessageWithSource, data: Some(text_data(text)) }
}

/// A message with `text`, visible only to the person who clicked or typed.
pub(super) fn private(text: &str) -> InteractionResponse {
    let data = InteractionResponseData { flags: Some(MessageFlags::EPHEMERAL), ..text_data(text) };
    InteractionResponse { kind: InteractionResponseType::ChannelMessageWithSource, data: Some(data) }
}

/// Replaces the clicked message's buttons with `components`.
pub(super) fn update_components(components: Vec<Component>) -> InteractionResponse {
    let data = InteractionResponseData { components: Some(components), ..Default::default() };
    InteractionResponse { kind: InteractionResponseType::UpdateMessage, data: Some(data) }
}

/// Replaces the clicked message with `message`, without buttons (an empty
/// list, or Discord keeps the old ones).
pub(super) fn update_message(message: &MessagePayload) -> InteractionResponse {
    let data = InteractionResponseData {
        content: message.content.clone(),
        embeds: (!message.embeds.is_empty()).then(|| message.embeds.clone()),
        components: Some(Vec::new()),
        allowed_mentions: Some(AllowedMentions::default()),
        ..Default::default()
    };
    InteractionResponse { kind: InteractionResponseType::UpdateMessage, data: Some(data) }
}

/// "Thinking…": the answer follows as an edit of the original response.
pub(super) fn deferred() -> InteractionResponse {
    InteractionResponse { kind: InteractionResponseType::DeferredChannelMessageWithSource, data: None }
}

/// Autocomplete choices.
pub(super) fn choices(choices: Vec<CommandOptionChoice>) -> InteractionResponse {
    let data = InteractionResponseData { choices: Some(choices), ..Default::default() };
    InteractionResponse { kind: InteractionResponseType::ApplicationCommandAutocompleteResult, data: Some(data) }
}

/// A message body with `text` (cut to Discord's limit), pinging no one: for
/// a response, or an edit of a deferred one.
pub(super) fn text_data(text: &str) -> InteractionResponseData {
    InteractionResponseData {
        content: Some(clean(text, limits::CONTENT)),
        allowed_mentions: Some(AllowedMentions::default()),
        ..Default::default()
    }
}

impl Sidecar {
    /// Sends `response` to `interaction`; a failure is logged (with `what`
    /// was answered): the person sees Discord's "interaction failed".
    pub(super) async fn respond(&self, interaction: &Interaction, response: &InteractionResponse, what: &str) {
        let Some(discord) = &self.discord else { return };
        let body = serde_json::to_value(response).expect("interaction responses serialize");
        if let Err(err) = discord.interaction_callback(interaction.id, &interaction.token, &body).await {
            tracing::warn!(error = %err, what, "could not answer an interaction");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn responses_have_discords_shape() {
        let value = |response: InteractionResponse| serde_json::to_value(response).unwrap();
        assert_eq!(
            value(private("no")),
            json!({ "type": 4, "data": { "content": "no", "flags": 64, "allowed_mentions": { "parse": [] } } })
        );
        assert_eq!(
            value(public("yes")),
            json!({ "type": 4, "data": { "content": "yes", "allowed_mentions": { "parse": [] } } })
        );
        assert_eq!(value(deferred()), json!({ "type": 5 }));
        assert_eq!(value(update_components(Vec::new())), json!({ "type": 7, "data": { "components": [] } }));
        let message = MessagePayload { content: Some("done".into()), ..Default::default() };
        assert_eq!(
            value(update_message(&message)),
            json!({ "type": 7, "data": { "content": "done", "components": [], "allowed_mentions": { "parse": [] } } })
        );
        assert_eq!(value(choices(Vec::new())), json!({ "type": 8, "data": { "choices": [] } }));
    }

    #[test]
    fn a_long_text_is_cut_to_discords_limit() {
        let response = private(&"x".repeat(limits::CONTENT + 10));
        let content = response.data.and_then(|d| d.content).unwrap();
        assert!(content.chars().count() <= limits::CONTENT);
    }
}
