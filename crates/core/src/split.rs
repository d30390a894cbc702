//! Output too long for one message: [`split_long_output`] spreads it over
//! numbered parts that together hold all of it, each within Discord's limits.
//!
//! ```
//! use omp_discord_core::embed::validate_message;
//! use omp_discord_core::split::split_long_output;
//!
//! let log = "cargo test\n".repeat(5000); // 55,000 characters
//! let parts = split_long_output("cargo test", &log, "text");
//! assert!(parts.len() > 1);
//! for part in &parts {
//!     validate_message(part)?;
//! }
//! assert!(parts[0].embeds[0].title.as_deref().unwrap().ends_with(&format!("(1/{})", parts.len())));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use twilight_model::channel::message::AllowedMentions;

use crate::embed::{self, Level, MessagePayload, clean, defuse_mass_mentions, limits};
use crate::markdown::{break_backtick_runs, code_lang, fence_overhead};
use crate::redact::redact_text;

/// Embed text one part of [`split_long_output`] carries, leaving room for the
/// longest title under [`limits::EMBED_TOTAL`].
const PART_BUDGET: usize = limits::EMBED_TOTAL - limits::TITLE - 44;

/// Smallest code chunk worth an extra embed in a part.
const MIN_CHUNK: usize = 200;

/// Splits `text` across as many messages as it needs, none of it dropped:
/// each message carries code blocks in language `lang` (several embeds, up to
/// Discord's total), and the first embed's title is `title (i/n)` when there
/// is more than one part. Cuts prefer line ends.
///
/// The text is redacted as a whole first (a secret is never split in two
/// before the scanner sees it), mass mentions are defused, and backtick runs
/// are broken with a zero-width space so the text can never close its block;
/// apart from those zero-width spaces, the parts' code bodies joined in order
/// are exactly the redacted text.
#[must_use]
pub fn split_long_output(title: &str, text: &str, lang: &str) -> Vec<MessagePayload> {
    let lang = code_lang(lang);
    let prepared = break_backtick_runs(&defuse_mass_mentions(&redact_text(text)));
    let body = if prepared.is_empty() { "(no output)" } else { prepared.as_str() };
    let overhead = fence_overhead(lang);

    let mut parts: Vec<Vec<String>> = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let mut blocks = Vec::new();
        let mut budget = PART_BUDGET;
        while !rest.is_empty() && blocks.len() < limits::EMBEDS && budget >= overhead + MIN_CHUNK {
            let room = budget.min(limits::DESCRIPTION) - overhead;
            let (chunk, tail) = next_chunk(rest, room);
            blocks.push(format!("```{lang}\n{chunk}\n```"));
            budget -= chunk.chars().count() + overhead;
            rest = tail;
        }
        parts.push(blocks);
    }

    let count = parts.len();
    let title = if title.trim().is_empty() { "Output" } else { title };
    parts
        .into_iter()
        .enumerate()
        .map(|(index, blocks)| {
            let suffix = if count > 1 { format!(" ({}/{count})", index + 1) } else { String::new() };
            let embeds = blocks
                .into_iter()
                .enumerate()
                .map(|(block_index, block)| {
                    let mut embed = embed::empty_embed(Level::Info);
                    if block_index == 0 {
                        let head = clean(title, limits::TITLE - suffix.chars().count());
                        embed.title = Some(format!("{head}{suffix}"));
                    }
                    embed.description = Some(block);
                    embed
                })
                .collect();
            MessagePayload {
                content: None,
                embeds,
                allowed_mentions: AllowedMentions::default(),
                components: Vec::new(),
                files: Vec::new(),
            }
        })
        .collect()
}

/// Splits off the first at most `max` characters of `text`, after the last
/// newline in its second half when there is one.
fn next_chunk(text: &str, max: usize) -> (&str, &str) {
    let Some((cut, _)) = text.char_indices().nth(max) else {
        return (text, "");
    };
    let head = &text[..cut];
    let half = head.char_indices().nth(max / 2).map_or(0, |(i, _)| i);
    match head[half..].rfind('\n') {
        Some(newline) => text.split_at(half + newline + 1),
        None => text.split_at(cut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::validate_message;
    use crate::markdown::ZWSP;

    fn bodies(parts: &[MessagePayload]) -> String {
        let mut joined = String::new();
        for part in parts {
            for embed in &part.embeds {
                let d = embed.description.as_deref().unwrap();
                let body = d.split_once('\n').unwrap().1.strip_suffix("\n```").unwrap();
                joined.push_str(body);
            }
        }
        joined
    }

    #[test]
    fn split_keeps_everything_and_numbers_parts() {
        let text: String = (0..3000).map(|i| format!("line {i} ```` @everyone ünï\n")).collect();
        let parts = split_long_output("build log", &text, "text");
        let n = parts.len();
        assert!(n > 1);
        for (i, part) in parts.iter().enumerate() {
            validate_message(part).unwrap();
            assert_eq!(part.embeds[0].title.as_deref(), Some(format!("build log ({}/{n})", i + 1).as_str()));
            assert!(part.embeds.iter().all(|e| e.description.as_deref().unwrap().matches("```").count() == 2));
        }
        let joined = bodies(&parts);
        assert!(!joined.contains("@everyone"));
        assert_eq!(joined.replace(ZWSP, ""), text);
    }

    #[test]
    fn split_at_the_boundaries() {
        let one = split_long_output("t", "short", "rust");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].embeds[0].title.as_deref(), Some("t"));
        assert_eq!(one[0].embeds[0].description.as_deref(), Some("```rust\nshort\n```"));
        let empty = split_long_output("", "", "");
        validate_message(&empty[0]).unwrap();
        // No newline at all: cuts at the character limit, multibyte safe.
        let wide = "é".repeat(100_000);
        let parts = split_long_output("t", &wide, "");
        parts.iter().for_each(|p| validate_message(p).unwrap());
        assert_eq!(bodies(&parts), wide);
    }

    #[test]
    fn split_redacts_the_whole_text_first() {
        let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
        let text = format!("{}token={secret}\n{}", "x".repeat(4070), "y".repeat(10));
        let parts = split_long_output("t", &text, "");
        let json = serde_json::to_string(&parts).unwrap();
        assert!(!json.contains(secret) && !json.contains("ghp_0123"), "{json}");
    }
}
