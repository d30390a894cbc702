//! Why a request failed, in our terms: [`SendError`] for callers (with
//! Discord's JSON error code and its `errors` tree in words), and the
//! retry decision [`Failure`] taken from twilight's error.

use serde_json::Value;
use twilight_http::error::ErrorType;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Discord refused the request; retrying would not help.
    #[error("Discord refused the request (HTTP {status}, code {code}): {message}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Discord's JSON error code (0 when absent).
        code: u64,
        /// Discord's message, with the `errors` tree flattened into `path: reason`.
        message: String,
    },
    /// The token was refused.
    #[error(
        "Discord refused the bot token (HTTP 401): check OMP_DISCORD_TOKEN, or reset the token in the Developer Portal"
    )]
    Unauthorized,
    /// Discord kept failing or could not be reached.
    #[error("Discord could not be reached after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure, without URLs or tokens.
        last: String,
    },
}

impl SendError {
    /// Discord's error code, when Discord refused the request.
    pub fn code(&self) -> Option<u64> {
        match self {
            Self::Rejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// What one attempt's failure means for the next: give up with the error,
/// retry after a backoff (the reason, for the log), or pause for a 429.
pub(super) enum Failure {
    /// Retrying would not help.
    Fatal(SendError),
    /// A 5xx answer, a timeout or a network failure: worth another attempt.
    Retry(String),
    /// Discord answered 429 (twilight's own retry was cancelled).
    RateLimited,
}

impl From<twilight_http::Error> for Failure {
    fn from(err: twilight_http::Error) -> Self {
        match err.kind() {
            ErrorType::Unauthorized => Self::Fatal(SendError::Unauthorized),
            ErrorType::Response { body, status, .. } => {
                let status = status.get();
                if status == 401 {
                    return Self::Fatal(SendError::Unauthorized);
                }
                if status >= 500 || status == 429 {
                    return Self::Retry(format!("HTTP {status}"));
                }
                let (code, message) = describe_api_error(body);
                Self::Fatal(SendError::Rejected { status, code, message })
            }
            ErrorType::RequestTimedOut => Self::Retry("the request timed out".to_owned()),
            // Only our pre-flight check cancels: twilight was about to retry a 429.
            ErrorType::RequestCanceled => Self::RateLimited,
            ErrorType::RequestError => Self::Retry("the connection to Discord failed".to_owned()),
            _ => Self::Retry("Discord's answer could not be read".to_owned()),
        }
    }
}

/// Discord's `{code, message, errors}` as one line: `Invalid Form Body
/// (embeds.0.description: Must be 4096 or fewer in length.)`.
fn describe_api_error(body: &[u8]) -> (u64, String) {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return (0, "unreadable error body".to_owned());
    };
    let code = value["code"].as_u64().unwrap_or(0);
    let mut message = value["message"].as_str().unwrap_or("no message").to_owned();
    let mut details = Vec::new();
    flatten_errors(&value["errors"], &mut String::new(), &mut details);
    if !details.is_empty() {
        message = format!("{message} ({})", details.join("; "));
    }
    (code, message)
}

fn flatten_errors(node: &Value, path: &mut String, out: &mut Vec<String>) {
    let Some(object) = node.as_object() else { return };
    for (key, child) in object {
        if key == "_errors" {
            for error in child.as_array().into_iter().flatten() {
                let reason = error["message"].as_str().unwrap_or("invalid");
                out.push(format!("{path}: {reason}"));
            }
            continue;
        }
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key);
        flatten_errors(child, path, out);
        path.truncate(len);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_body_errors_are_flattened() {
        let body = br#"{"code":50035,"message":"Invalid Form Body","errors":{"embeds":{"0":{"description":{"_errors":[{"code":"BASE_TYPE_MAX_LENGTH","message":"Must be 4096 or fewer in length."}]}}}}}"#;
        let (code, message) = describe_api_error(body);
        assert_eq!(code, 50035);
        assert_eq!(message, "Invalid Form Body (embeds.0.description: Must be 4096 or fewer in length.)");
    }

    #[test]
    fn plain_errors_keep_their_message() {
        assert_eq!(
            describe_api_error(br#"{"code":10003,"message":"Unknown Channel"}"#),
            (10003, "Unknown Channel".into())
        );
        assert_eq!(describe_api_error(b"<html>").0, 0);
    }

    proptest::proptest! {
        /// Whatever body an error answer has (a proxy's HTML, truncated or
        /// odd JSON, an `errors` tree as deep as JSON parsing allows), it is
        /// described without panicking.
        #[test]
        fn any_error_body_is_described(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
            depth in 0usize..200,
            code in proptest::prelude::any::<i64>(),
        ) {
            let _ = describe_api_error(&bytes);
            let nested = format!(
                r#"{{"code":{code},"message":"x","errors":{}{{"_errors":[{{"message":"deep"}}]}}{}}}"#,
                r#"{"a":"#.repeat(depth),
                "}".repeat(depth)
            );
            let (found, message) = describe_api_error(nested.as_bytes());
            if depth < 120 {
                proptest::prop_assert_eq!(found, u64::try_from(code).unwrap_or(0));
                proptest::prop_assert!(message.contains("deep"), "{message}");
            }
        }
    }
}
