//! `POST /interactions/{id}/{token}/callback`.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;

use super::channels::attachments;
use super::{MessageBody, no_content, respond, snowflake};
use crate::error::ApiError;
use crate::state::EmulatorState;

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    with_response: Option<bool>,
}

pub(super) async fn callback(
    State(state): State<EmulatorState>,
    Path((interaction_id, token)): Path<(String, String)>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
    body: MessageBody,
) -> Result<Response, ApiError> {
    let id = snowflake(&interaction_id).ok_or_else(ApiError::unknown_interaction)?;
    let channel =
        state.world().interactions.get(&id).map(|i| i.channel_id).ok_or_else(ApiError::unknown_interaction)?;
    let files = attachments(&state, &headers, channel, &body.json["data"], &body.files);
    let response = crate::interaction::callback(&state, id, &token, &body.json, files)?;
    if query.with_response == Some(true) {
        Ok(respond(response, body.recorded))
    } else {
        let mut response = no_content();
        if let Some(recorded) = body.recorded {
            response.extensions_mut().insert(recorded);
        }
        Ok(response)
    }
}
