//! Discord's message limits, the messages omp-discord posts, and a validator
//! that checks a payload against every limit before it leaves the machine.
//!
//! Builders enforce the limits by construction: text that is too long is cut
//! at a character boundary and visibly marked, never silently dropped, and all
//! text passes through [`crate::redact`] first.
//!
//! ```
//! use omp_discord_core::embed::{build_notification, validate_message, Level, Notification};
//!
//! let note = Notification { message: "deploy finished".into(), level: Level::Success, ..Default::default() };
//! let payload = build_notification(&note, "omp-discord");
//! validate_message(&payload)?;
//! assert_eq!(payload.embeds[0].description.as_deref(), Some("deploy finished"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - this file: payloads, notification builders, redaction, truncation, coalescing and validation.
//! - [`limits`]: Discord's limits as constants.
//! - `tests.rs`: limits kept by construction, redaction, mentions, coalescing, validation errors.

pub mod limits;

use serde::{Deserialize, Serialize};
use twilight_model::channel::message::embed::{EmbedField, EmbedFooter};
use twilight_model::channel::message::{AllowedMentions, Embed};

use crate::redact::redact_text;

/// A small text file attached to a message (a log, a diff, a long output).
/// The sidecar journals it with the message and uploads it as multipart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileUpload {
    /// The name Discord shows, e.g. `build.log` (see [`file_name`]).
    pub filename: String,
    /// The file's text (UTF-8), redacted like everything else.
    pub content: String,
}

/// A safe attachment name from whatever the caller gave: the last path
/// component, with anything but letters, digits, `.`, `-` and `_` replaced by
/// `_`, no leading dot, at most [`limits::FILENAME`] characters (the
/// extension kept). `None` when nothing usable is left.
///
/// ```
/// use omp_discord_core::embed::file_name;
///
/// assert_eq!(file_name("../logs/build output.log").as_deref(), Some("build_output.log"));
/// assert_eq!(file_name("/").as_deref(), None);
/// ```
#[must_use]
pub fn file_name(raw: &str) -> Option<String> {
    let base = raw.trim().rsplit(['/', '\\']).next().unwrap_or_default();
    let mut name: String =
        base.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect();
    name = name.trim_start_matches('.').to_owned();
    if name.trim_matches(['_', '.']).is_empty() {
        return None;
    }
    if name.len() > limits::FILENAME {
        let ext = name.rfind('.').map(|dot| name[dot..].to_owned()).filter(|e| e.len() <= 16).unwrap_or_default();
        name.truncate(limits::FILENAME - ext.len());
        name.push_str(&ext);
    }
    Some(name)
}

/// A message as sent to Discord's create-message endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MessagePayload {
    /// Plain text above the embeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Rich embeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub embeds: Vec<Embed>,
    /// Which mentions may ping. Empty by default: model output never pings anyone.
    #[serde(default)]
    pub allowed_mentions: AllowedMentions,
    /// Buttons (approvals).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<twilight_model::channel::message::Component>,
    /// Text files uploaded with the message (not part of Discord's JSON body:
    /// the sidecar sends them as multipart `files[n]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileUpload>,
}

/// How a notification is coloured and labelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Neutral information.
    #[default]
    Info,
    /// Something finished well.
    Success,
    /// Something needs attention.
    Warning,
    /// Something failed.
    Error,
}

impl Level {
    /// The embed's colour bar.
    #[must_use]
    pub fn color(self) -> u32 {
        match self {
            Self::Info => 0x5865F2,
            Self::Success => 0x57F287,
            Self::Warning => 0xFEE75C,
            Self::Error => 0xED4245,
        }
    }
}

/// One name/value pair shown under a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyField {
    /// The field's label.
    pub name: String,
    /// The field's text.
    pub value: String,
    /// Whether Discord may lay the field out beside others.
    #[serde(default)]
    pub inline: bool,
}

/// A notification, as the `discord_notify` tool and the CLI describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Notification {
    /// Optional headline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The text.
    pub message: String,
    /// Colour and label.
    #[serde(default)]
    pub level: Level,
    /// Extra name/value pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<NotifyField>,
}

/// Builds the message for a notification, redacted and within limits.
#[must_use]
pub fn build_notification(note: &Notification, project: &str) -> MessagePayload {
    let mut embed = empty_embed(note.level);
    embed.title = note.title.as_deref().map(|t| clean(t, limits::TITLE));
    embed.description = Some(clean(&note.message, limits::DESCRIPTION));
    embed.fields = note
        .fields
        .iter()
        .take(limits::FIELDS)
        .map(|f| EmbedField {
            name: non_blank(clean(&f.name, limits::FIELD_NAME)),
            value: non_blank(clean(&f.value, limits::FIELD_VALUE)),
            inline: f.inline,
        })
        .collect();
    embed.footer = Some(footer(project));
    let mut payload = single_embed(embed);
    fit_total(&mut payload);
    payload
}

/// Merges as many payloads from the front of `queue` as fit into one message
/// (embeds only, at most [`limits::EMBEDS`] and [`limits::EMBED_TOTAL`]
/// characters in all); returns that message and how many it took. A payload
/// with plain content is always sent on its own. `None` for an empty queue.
///
/// This is how a backlog for one thread drains in fewer requests without
/// reordering anything.
#[must_use]
pub fn coalesce(queue: &[MessagePayload]) -> Option<(MessagePayload, usize)> {
    let first = queue.first()?;
    let mergeable = |p: &MessagePayload| {
        p.content.is_none() && !p.embeds.is_empty() && p.components.is_empty() && p.files.is_empty()
    };
    if !mergeable(first) {
        return Some((first.clone(), 1));
    }
    let mut merged = first.clone();
    let mut chars: usize = first.embeds.iter().map(embed_chars).sum();
    let mut taken = 1;
    for next in &queue[1..] {
        let next_chars: usize = next.embeds.iter().map(embed_chars).sum();
        if !mergeable(next)
            || merged.embeds.len() + next.embeds.len() > limits::EMBEDS
            || chars + next_chars > limits::EMBED_TOTAL
        {
            break;
        }
        merged.embeds.extend(next.embeds.iter().cloned());
        chars += next_chars;
        taken += 1;
    }
    merged.allowed_mentions = AllowedMentions::default();
    Some((merged, taken))
}

/// Redacts every text part of a payload in place and forbids all pings.
/// The sidecar applies it to whatever a client sends, as a second line of defence.
pub fn redact_payload(payload: &mut MessagePayload) {
    let redact = |text: &mut String| {
        if let std::borrow::Cow::Owned(clean) = redact_text(text) {
            *text = clean;
        }
        *text = defuse_mass_mentions(text);
    };
    if let Some(content) = &mut payload.content {
        redact(content);
    }
    for embed in &mut payload.embeds {
        for text in [&mut embed.title, &mut embed.description, &mut embed.url].into_iter().flatten() {
            redact(text);
        }
        if let Some(footer) = &mut embed.footer {
            redact(&mut footer.text);
        }
        if let Some(author) = &mut embed.author {
            redact(&mut author.name);
        }
        for field in &mut embed.fields {
            redact(&mut field.name);
            redact(&mut field.value);
        }
    }
    for file in &mut payload.files {
        // Files never ping, so only secrets are replaced; the name is made safe again.
        if let std::borrow::Cow::Owned(clean) = redact_text(&file.content) {
            file.content = clean;
        }
        if let std::borrow::Cow::Owned(clean) = redact_text(&file.filename) {
            file.filename = file_name(&clean).unwrap_or_else(|| "file.txt".to_owned());
        }
    }
    payload.allowed_mentions = AllowedMentions::default();
}

/// Redacts, neutralises mass mentions, and cuts text to `max` characters.
#[must_use]
pub fn clean(text: &str, max: usize) -> String {
    let redacted = redact_text(text);
    let defused = defuse_mass_mentions(&redacted);
    truncate_chars(&defused, max)
}

/// Inserts a zero-width space after `@` in `@everyone` and `@here`, so that
/// even a client that ignores `allowed_mentions` shows them as plain text.
#[must_use]
pub fn defuse_mass_mentions(text: &str) -> String {
    text.replace("@everyone", "@\u{200b}everyone").replace("@here", "@\u{200b}here")
}

/// What stands in for an empty field name or value: Discord refuses those
/// (50035 "This field is required"), so a zero-width space shows a blank.
pub const BLANK_FIELD: &str = "\u{200b}";

/// `text`, or [`BLANK_FIELD`] when it shows nothing.
#[must_use]
pub fn non_blank(text: String) -> String {
    if text.trim().is_empty() { BLANK_FIELD.to_owned() } else { text }
}

/// Marker appended to text that had to be cut.
pub const TRUNCATION_MARKER: &str = "… [truncated]";

/// Cuts `text` to at most `max` characters; when it cuts, the result ends with
/// [`TRUNCATION_MARKER`] so a reader knows something is missing.
#[must_use]
pub fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let marker_len = TRUNCATION_MARKER.chars().count();
    let keep = max.saturating_sub(marker_len);
    let mut out: String = text.chars().take(keep).collect();
    out.push_str(TRUNCATION_MARKER);
    // A marker longer than `max` would break the limit it protects.
    truncate_plain(out, max)
}

fn truncate_plain(text: String, max: usize) -> String {
    if text.chars().count() <= max { text } else { text.chars().take(max).collect() }
}

pub(crate) fn empty_embed(level: Level) -> Embed {
    Embed {
        author: None,
        color: Some(level.color()),
        description: None,
        fields: Vec::new(),
        flags: None,
        footer: None,
        image: None,
        kind: "rich".to_owned(),
        provider: None,
        thumbnail: None,
        timestamp: None,
        title: None,
        url: None,
        video: None,
    }
}

pub(crate) fn footer(project: &str) -> EmbedFooter {
    EmbedFooter { icon_url: None, proxy_icon_url: None, text: clean(&format!("omp · {project}"), limits::FOOTER) }
}

pub(crate) fn single_embed(embed: Embed) -> MessagePayload {
    MessagePayload {
        content: None,
        embeds: vec![embed],
        allowed_mentions: AllowedMentions::default(),
        components: Vec::new(),
        files: Vec::new(),
    }
}

/// Characters always left to an embed's description when fields compete for
/// the 6000-character total: the text is what a reader came for.
const DESCRIPTION_SHARE: usize = 2000;

/// Makes each embed of a payload fit [`limits::EMBED_TOTAL`] (sharing it
/// equally): shrinks the description to its share, then keeps fields in order
/// while they fit, cutting the first one that does not, and says in the footer
/// how many were left out.
pub(crate) fn fit_total(payload: &mut MessagePayload) {
    let share = limits::EMBED_TOTAL / payload.embeds.len().max(1);
    for embed in &mut payload.embeds {
        fit_embed(embed, share);
    }
}

fn fit_embed(embed: &mut Embed, budget: usize) {
    if embed_chars(embed) <= budget {
        return;
    }
    let count = |s: &str| s.chars().count();
    // Room for an "N fields omitted" note added to the footer below.
    let note_room = if embed.fields.is_empty() { 0 } else { 32 };
    let fixed = embed.title.as_deref().map_or(0, count)
        + embed.footer.as_ref().map_or(0, |f| count(&f.text))
        + embed.author.as_ref().map_or(0, |a| count(&a.name))
        + note_room;
    let mut room = budget.saturating_sub(fixed);
    let fields_len: usize = embed.fields.iter().map(|f| count(&f.name) + count(&f.value)).sum();
    if let Some(description) = embed.description.take() {
        let keep = count(&description).min(room.saturating_sub(fields_len).max(DESCRIPTION_SHARE.min(room)));
        let description = truncate_chars(&description, keep);
        room -= count(&description);
        embed.description = Some(description);
    }
    let original_fields = embed.fields.len();
    let mut kept = Vec::with_capacity(original_fields);
    for mut field in std::mem::take(&mut embed.fields) {
        let name_len = count(&field.name);
        let len = name_len + count(&field.value);
        if len <= room {
            room -= len;
            kept.push(field);
        } else if room >= name_len + TRUNCATION_MARKER.len() + 16 {
            field.value = truncate_chars(&field.value, room - name_len);
            room = 0;
            kept.push(field);
        } else {
            room = 0;
        }
    }
    let omitted = original_fields - kept.len();
    embed.fields = kept;
    if omitted > 0 {
        let footer = embed.footer.get_or_insert_with(|| EmbedFooter {
            icon_url: None,
            proxy_icon_url: None,
            text: String::new(),
        });
        // The note must not push a full footer past its own limit.
        let note = format!(" · {omitted} fields omitted");
        let keep = limits::FOOTER - note.chars().count();
        if footer.text.chars().count() > keep {
            footer.text = truncate_chars(&footer.text, keep);
        }
        footer.text.push_str(&note);
    }
}

/// Whether a message Discord shows (`content`, `embeds`) is the posting of
/// `payload`: the same text and the same embeds (titles, descriptions and
/// fields), ignoring what Discord adds (embed types, empty defaults) and
/// whitespace at the ends. Used to find a message posted before a crash whose
/// nonce Discord no longer remembers, so it is not posted again.
#[must_use]
pub fn posted_as(payload: &MessagePayload, content: &str, embeds: &[Embed]) -> bool {
    let text = |value: Option<&str>| value.unwrap_or_default().trim().to_owned();
    if text(payload.content.as_deref()) != content.trim() || payload.embeds.len() != embeds.len() {
        return false;
    }
    payload.embeds.iter().zip(embeds).all(|(sent, shown)| {
        text(sent.title.as_deref()) == text(shown.title.as_deref())
            && text(sent.description.as_deref()) == text(shown.description.as_deref())
            && sent.fields.len() == shown.fields.len()
            && sent
                .fields
                .iter()
                .zip(&shown.fields)
                .all(|(a, b)| a.name.trim() == b.name.trim() && a.value.trim() == b.value.trim())
    })
}

/// Characters of one embed that count toward [`limits::EMBED_TOTAL`].
#[must_use]
pub fn embed_chars(embed: &Embed) -> usize {
    let count = |s: &Option<String>| s.as_deref().map_or(0, |s| s.chars().count());
    count(&embed.title)
        + count(&embed.description)
        + embed.footer.as_ref().map_or(0, |f| f.text.chars().count())
        + embed.author.as_ref().map_or(0, |a| a.name.chars().count())
        + embed.fields.iter().map(|f| f.name.chars().count() + f.value.chars().count()).sum::<usize>()
}

/// A payload that breaks one of Discord's limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EmbedError {
    /// The message has no content, no embeds and no files.
    #[error("the message is empty: it needs content, an embed or a file")]
    Empty,
    /// Attached data is too big.
    #[error("the {what} are {bytes} bytes, but the max is {max} bytes")]
    TooLarge {
        /// What was measured (e.g. "files together").
        what: &'static str,
        /// Its size in bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A file name Discord would mangle or refuse.
    #[error("the file name {name:?} is not usable: use letters, digits, '.', '-' and '_' (e.g. build.log)")]
    BadFilename {
        /// The name as given.
        name: String,
    },
    /// A text part is too long.
    #[error("the {part} is {chars} characters long, but the max is {max}")]
    TooLong {
        /// Which part (e.g. "embed 1 description").
        part: String,
        /// Its length in characters.
        chars: usize,
        /// Discord's limit.
        max: usize,
    },
    /// A field's name or value is empty, which Discord refuses.
    #[error("the {part} is empty; Discord requires text there")]
    EmptyField {
        /// Which part (e.g. "embed 1 field 2 name").
        part: String,
    },
    /// Too many items of a kind.
    #[error("the message has {count} {what}, but the max is {max}")]
    TooMany {
        /// What was counted (e.g. "embeds").
        what: &'static str,
        /// How many there are.
        count: usize,
        /// Discord's limit.
        max: usize,
    },
}

/// Checks a payload against Discord's limits.
///
/// # Errors
///
/// The first limit the payload breaks.
pub fn validate_message(payload: &MessagePayload) -> Result<(), EmbedError> {
    let content = payload.content.as_deref().unwrap_or("");
    if content.trim().is_empty() && payload.embeds.is_empty() && payload.files.is_empty() {
        return Err(EmbedError::Empty);
    }
    validate_files(&payload.files)?;
    check_len("content", content, limits::CONTENT)?;
    if payload.embeds.len() > limits::EMBEDS {
        return Err(EmbedError::TooMany { what: "embeds", count: payload.embeds.len(), max: limits::EMBEDS });
    }
    let mut total = 0;
    for (index, embed) in payload.embeds.iter().enumerate() {
        let n = index + 1;
        check_len(&format!("embed {n} title"), embed.title.as_deref().unwrap_or(""), limits::TITLE)?;
        check_len(&format!("embed {n} description"), embed.description.as_deref().unwrap_or(""), limits::DESCRIPTION)?;
        if let Some(footer) = &embed.footer {
            check_len(&format!("embed {n} footer"), &footer.text, limits::FOOTER)?;
        }
        if let Some(author) = &embed.author {
            check_len(&format!("embed {n} author name"), &author.name, limits::AUTHOR)?;
        }
        if embed.fields.len() > limits::FIELDS {
            return Err(EmbedError::TooMany {
                what: "fields in one embed",
                count: embed.fields.len(),
                max: limits::FIELDS,
            });
        }
        for (field_index, field) in embed.fields.iter().enumerate() {
            let f = field_index + 1;
            for (part, text) in [("name", &field.name), ("value", &field.value)] {
                if text.is_empty() {
                    return Err(EmbedError::EmptyField { part: format!("embed {n} field {f} {part}") });
                }
            }
            check_len(&format!("embed {n} field {f} name"), &field.name, limits::FIELD_NAME)?;
            check_len(&format!("embed {n} field {f} value"), &field.value, limits::FIELD_VALUE)?;
        }
        total += embed_chars(embed);
    }
    if total > limits::EMBED_TOTAL {
        return Err(EmbedError::TooLong {
            part: "text of all embeds".to_owned(),
            chars: total,
            max: limits::EMBED_TOTAL,
        });
    }
    Ok(())
}

/// Checks attached files: how many, their names ([`file_name`] leaves a
/// good name unchanged) and their size together.
///
/// # Errors
///
/// The first limit the files break.
pub fn validate_files(files: &[FileUpload]) -> Result<(), EmbedError> {
    if files.len() > limits::FILES {
        return Err(EmbedError::TooMany { what: "files", count: files.len(), max: limits::FILES });
    }
    for file in files {
        if file_name(&file.filename).as_deref() != Some(file.filename.as_str()) {
            return Err(EmbedError::BadFilename { name: truncate_chars(&file.filename, 120) });
        }
    }
    let bytes: usize = files.iter().map(|f| f.content.len()).sum();
    if bytes > limits::FILES_BYTES {
        return Err(EmbedError::TooLarge { what: "files together", bytes, max: limits::FILES_BYTES });
    }
    Ok(())
}

fn check_len(part: &str, text: &str, max: usize) -> Result<(), EmbedError> {
    let chars = text.chars().count();
    if chars > max {
        return Err(EmbedError::TooLong { part: part.to_owned(), chars, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
