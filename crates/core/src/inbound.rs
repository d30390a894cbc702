//! Messages people write in a session's Discord thread, checked and shaped
//! before they reach OMP as a user message.

/// Longest inbound message passed to OMP, in characters (Discord allows 4000 for Nitro users).
pub const MAX_INBOUND_CHARS: usize = 4000;

/// Why an inbound message was not passed on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundRefusal {
    /// Nothing left after cleaning (e.g. only an attachment or whitespace).
    #[error("the message has no text")]
    Empty,
    /// Longer than [`MAX_INBOUND_CHARS`].
    #[error("the message is {chars} characters long, but the max is {max}")]
    TooLong {
        /// Its length.
        chars: usize,
        /// The limit.
        max: usize,
    },
}

/// The text OMP receives for a Discord reply: control characters removed
/// (newlines and tabs kept), attributed to its author so the model knows
/// where it came from.
///
/// # Errors
///
/// [`InboundRefusal`] when the message is empty or too long.
pub fn prepare_inbound(author: &str, content: &str) -> Result<String, InboundRefusal> {
    let cleaned: String =
        content.chars().filter(|c| !c.is_control() || *c == '\n' || *c == '\t').collect::<String>().trim().to_owned();
    if cleaned.is_empty() {
        return Err(InboundRefusal::Empty);
    }
    let chars = cleaned.chars().count();
    if chars > MAX_INBOUND_CHARS {
        return Err(InboundRefusal::TooLong { chars, max: MAX_INBOUND_CHARS });
    }
    let author: String = author.chars().filter(|c| !c.is_control()).take(64).collect();
    Ok(format!("[Discord message from {author}]\n{cleaned}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_attributed_and_cleaned() {
        let text = prepare_inbound("ana", "  please run\u{0007} the tests\n\tnow  ").unwrap();
        assert_eq!(text, "[Discord message from ana]\nplease run the tests\n\tnow");
    }

    #[test]
    fn empty_and_oversized_are_refused() {
        assert_eq!(prepare_inbound("a", " \u{0000} "), Err(InboundRefusal::Empty));
        let long = "é".repeat(MAX_INBOUND_CHARS + 1);
        assert_eq!(prepare_inbound("a", &long), Err(InboundRefusal::TooLong { chars: 4001, max: 4000 }));
        assert!(prepare_inbound("a", &"é".repeat(MAX_INBOUND_CHARS)).is_ok());
    }
}
