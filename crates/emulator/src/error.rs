//! Discord's error bodies, produced through one [`IntoResponse`] impl.

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An error answered with Discord's `{code, message, errors?}` body and status.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) body: Value,
    /// Boxed: errors travel in `Result`s everywhere and should stay small.
    pub(crate) headers: Box<HeaderMap>,
}

impl ApiError {
    fn coded(status: StatusCode, code: u32, message: &str) -> Self {
        Self { status, body: json!({ "message": message, "code": code }), headers: Box::default() }
    }

    pub(crate) fn unauthorized() -> Self {
        Self::coded(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
    }
    pub(crate) fn not_found() -> Self {
        Self::coded(StatusCode::NOT_FOUND, 0, "404: Not Found")
    }
    pub(crate) fn method_not_allowed() -> Self {
        Self::coded(StatusCode::METHOD_NOT_ALLOWED, 0, "405: Method Not Allowed")
    }
    pub(crate) fn unknown_channel() -> Self {
        Self::coded(StatusCode::NOT_FOUND, 10003, "Unknown Channel")
    }
    pub(crate) fn unknown_guild() -> Self {
        Self::coded(StatusCode::NOT_FOUND, 10004, "Unknown Guild")
    }
    pub(crate) fn unknown_message() -> Self {
        Self::coded(StatusCode::NOT_FOUND, 10008, "Unknown Message")
    }
    pub(crate) fn unknown_member() -> Self {
        Self::coded(StatusCode::NOT_FOUND, 10007, "Unknown Member")
    }
    pub(crate) fn unknown_user() -> Self {
        Self::coded(StatusCode::NOT_FOUND, 10013, "Unknown User")
    }
    pub(crate) fn unknown_emoji() -> Self {
        Self::coded(StatusCode::BAD_REQUEST, 10014, "Unknown Emoji")
    }
    pub(crate) fn unknown_webhook() -> Self {
        Self::coded(StatusCode::NOT_FOUND, 10015, "Unknown Webhook")
    }
    pub(crate) fn invalid_webhook_token() -> Self {
        Self::coded(StatusCode::UNAUTHORIZED, 50027, "Invalid Webhook Token")
    }
    pub(crate) fn unknown_interaction() -> Self {
        Self::coded(StatusCode::NOT_FOUND, 10062, "Unknown interaction")
    }
    pub(crate) fn unknown_application_command() -> Self {
        Self::coded(StatusCode::NOT_FOUND, 10063, "Unknown application command")
    }
    pub(crate) fn already_acknowledged() -> Self {
        Self::coded(StatusCode::BAD_REQUEST, 40060, "Interaction has already been acknowledged.")
    }
    pub(crate) fn missing_access() -> Self {
        Self::coded(StatusCode::FORBIDDEN, 50001, "Missing Access")
    }
    pub(crate) fn missing_permissions() -> Self {
        Self::coded(StatusCode::FORBIDDEN, 50013, "Missing Permissions")
    }
    pub(crate) fn cannot_edit_other_user() -> Self {
        Self::coded(StatusCode::FORBIDDEN, 50005, "Cannot edit a message authored by another user")
    }
    pub(crate) fn empty_message() -> Self {
        Self::coded(StatusCode::BAD_REQUEST, 50006, "Cannot send an empty message")
    }
    pub(crate) fn thread_archived() -> Self {
        Self::coded(StatusCode::BAD_REQUEST, 50083, "Thread is archived")
    }
    pub(crate) fn thread_already_created() -> Self {
        Self::coded(StatusCode::BAD_REQUEST, 160004, "A thread has already been created for this message")
    }
    pub(crate) fn invalid_json() -> Self {
        Self::coded(StatusCode::BAD_REQUEST, 50109, "The request body contains invalid JSON.")
    }
    /// Posting a message straight into a forum (or a category): Discord's 50008.
    pub(crate) fn not_a_text_channel() -> Self {
        Self::coded(StatusCode::BAD_REQUEST, 50008, "Cannot send messages in a non-text channel")
    }
    /// A forum with `REQUIRE_TAG` and a post without `applied_tags`: Discord's 40067.
    pub(crate) fn tag_required() -> Self {
        Self::coded(StatusCode::BAD_REQUEST, 40067, "A tag is required to create a forum post in this channel")
    }
    pub(crate) fn wrong_channel_type() -> Self {
        Self::coded(StatusCode::BAD_REQUEST, 50024, "Cannot execute action on this channel type")
    }
    pub(crate) fn invalid_form_body(errors: Value) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "code": 50035, "message": "Invalid Form Body", "errors": errors }),
            headers: Box::default(),
        }
    }
    pub(crate) fn payload_too_large() -> Self {
        Self::coded(StatusCode::PAYLOAD_TOO_LARGE, 40005, "Request entity too large")
    }
    pub(crate) fn server_error(status: StatusCode) -> Self {
        Self {
            status,
            body: json!({
                "message": format!("{}: {}", status.as_u16(), status.canonical_reason().unwrap_or("Error")),
                "code": 0
            }),
            headers: Box::default(),
        }
    }

    pub(crate) fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.insert(name, HeaderValue::from_str(&value).expect("header values are ASCII numbers and words"));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        response.headers_mut().extend(*self.headers);
        response
    }
}

/// `at` with `key` appended: the path of a child in the form errors tree.
pub(crate) fn child<'a>(at: &[&'a str], key: &'a str) -> Vec<&'a str> {
    let mut path = at.to_vec();
    path.push(key);
    path
}

/// Collects `Invalid Form Body` errors in Discord's nested `errors` tree.
#[derive(Debug, Default)]
pub(crate) struct FormErrors {
    tree: Map<String, Value>,
}

impl FormErrors {
    /// Adds an error at `path` (object keys, array indices as strings).
    pub(crate) fn add(&mut self, path: &[&str], code: &str, message: String) {
        let mut node = &mut self.tree;
        for key in path {
            node = node
                .entry((*key).to_owned())
                .or_insert_with(|| Value::Object(Map::new()))
                .as_object_mut()
                .expect("form error nodes are objects");
        }
        node.entry("_errors")
            .or_insert_with(|| Value::Array(Vec::new()))
            .as_array_mut()
            .expect("_errors is an array")
            .push(json!({ "code": code, "message": message }));
    }

    /// Adds `BASE_TYPE_MAX_LENGTH` at `path`.
    pub(crate) fn too_long(&mut self, path: &[&str], max: usize) {
        self.add(path, "BASE_TYPE_MAX_LENGTH", format!("Must be {max} or fewer in length."));
    }

    /// Adds `BASE_TYPE_REQUIRED` at `path`.
    pub(crate) fn required(&mut self, path: &[&str]) {
        self.add(path, "BASE_TYPE_REQUIRED", "This field is required".to_owned());
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// `Ok` if nothing was added, else the 50035 error.
    pub(crate) fn into_result(self) -> Result<(), ApiError> {
        if self.is_empty() { Ok(()) } else { Err(ApiError::invalid_form_body(Value::Object(self.tree))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_errors_nest_like_discord() {
        let mut errors = FormErrors::default();
        errors.too_long(&["embeds", "0", "description"], 4096);
        let err = errors.into_result().unwrap_err();
        assert_eq!(
            err.body,
            json!({"code":50035,"message":"Invalid Form Body","errors":{"embeds":{"0":{"description":{"_errors":[{"code":"BASE_TYPE_MAX_LENGTH","message":"Must be 4096 or fewer in length."}]}}}}})
        );
    }
}
