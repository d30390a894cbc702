//! Discord's limits on message bodies, checked independently of the product's own rules.
//!
//! Every length is counted in Unicode scalar values (`chars`), as Discord counts them.

use std::collections::HashSet;

use serde_json::Value;

use crate::error::{ApiError, FormErrors};

/// Maximum message content length.
pub(crate) const CONTENT_MAX: usize = 2000;
/// Maximum number of embeds in one message.
pub(crate) const EMBEDS_MAX: usize = 10;
/// Maximum embed title length.
pub(crate) const EMBED_TITLE_MAX: usize = 256;
/// Maximum embed description length.
pub(crate) const EMBED_DESCRIPTION_MAX: usize = 4096;
/// Maximum number of fields in one embed.
pub(crate) const EMBED_FIELDS_MAX: usize = 25;
/// Maximum embed field name length.
pub(crate) const EMBED_FIELD_NAME_MAX: usize = 256;
/// Maximum embed field value length.
pub(crate) const EMBED_FIELD_VALUE_MAX: usize = 1024;
/// Maximum embed footer text length.
pub(crate) const EMBED_FOOTER_MAX: usize = 2048;
/// Maximum embed author name length.
pub(crate) const EMBED_AUTHOR_MAX: usize = 256;
/// Maximum text of all embeds in one message together.
pub(crate) const EMBED_TOTAL_MAX: usize = 6000;
/// Maximum embed colour (24-bit RGB).
pub(crate) const EMBED_COLOR_MAX: u64 = 0xFF_FFFF;
/// Maximum action rows in one message.
pub(crate) const ACTION_ROWS_MAX: usize = 5;
/// Maximum components in one action row.
pub(crate) const ROW_COMPONENTS_MAX: usize = 5;
/// Maximum `custom_id` length.
pub(crate) const CUSTOM_ID_MAX: usize = 100;
/// Maximum button label length.
pub(crate) const BUTTON_LABEL_MAX: usize = 80;
/// Maximum select menu options.
pub(crate) const SELECT_OPTIONS_MAX: usize = 25;
/// Maximum select option label, value and description length.
pub(crate) const SELECT_OPTION_TEXT_MAX: usize = 100;
/// Maximum select placeholder length.
pub(crate) const SELECT_PLACEHOLDER_MAX: usize = 150;
/// Maximum thread (and channel) name length.
pub(crate) const THREAD_NAME_MAX: usize = 100;
/// Maximum `nonce` length when it is a string.
pub(crate) const NONCE_MAX: usize = 25;
/// Maximum modal title length.
pub(crate) const MODAL_TITLE_MAX: usize = 45;
/// Maximum text input label length.
pub(crate) const TEXT_INPUT_LABEL_MAX: usize = 45;
/// Maximum text input value length (also its `min_length`/`max_length`).
pub(crate) const TEXT_INPUT_VALUE_MAX: usize = 4000;

/// Message flag: components v2 layout (components need not be action rows).
const IS_COMPONENTS_V2: u64 = 1 << 15;

fn chars(value: &Value) -> usize {
    value.as_str().map_or(0, |s| s.chars().count())
}

fn check_len(errors: &mut FormErrors, body: &Value, key: &str, path: &[&str], max: usize) {
    if chars(&body[key]) > max {
        let mut full = path.to_vec();
        full.push(key);
        errors.too_long(&full, max);
    }
}

/// Whether a create body has something to show.
pub(crate) fn has_payload(body: &Value, files: usize) -> bool {
    let non_empty = |key: &str| body[key].as_array().is_some_and(|a| !a.is_empty());
    body["content"].as_str().is_some_and(|c| !c.is_empty())
        || non_empty("embeds")
        || non_empty("components")
        || non_empty("sticker_ids")
        || body["poll"].is_object()
        || files > 0
}

/// Checks a message create or edit body. On create, an empty message is 50006.
pub(crate) fn message(body: &Value, creating: bool, files: usize) -> Result<(), ApiError> {
    let mut errors = FormErrors::default();
    check_len(&mut errors, body, "content", &[], CONTENT_MAX);
    match &body["nonce"] {
        Value::String(nonce) if nonce.chars().count() > NONCE_MAX => {
            errors.too_long(&["nonce"], NONCE_MAX);
        }
        _ => {}
    }
    embeds(&mut errors, &body["embeds"]);
    let v2 = body["flags"].as_u64().unwrap_or(0) & IS_COMPONENTS_V2 != 0;
    components(&mut errors, &body["components"], v2);
    errors.into_result()?;
    if creating && !has_payload(body, files) {
        return Err(ApiError::empty_message());
    }
    Ok(())
}

fn embeds(errors: &mut FormErrors, embeds: &Value) {
    let Some(embeds) = embeds.as_array() else {
        return;
    };
    if embeds.len() > EMBEDS_MAX {
        errors.too_long(&["embeds"], EMBEDS_MAX);
    }
    let mut total = 0;
    for (index, embed) in embeds.iter().enumerate() {
        let index = index.to_string();
        let at = ["embeds", index.as_str()];
        check_len(errors, embed, "title", &at, EMBED_TITLE_MAX);
        check_len(errors, embed, "description", &at, EMBED_DESCRIPTION_MAX);
        check_len(errors, &embed["footer"], "text", &["embeds", &index, "footer"], EMBED_FOOTER_MAX);
        check_len(errors, &embed["author"], "name", &["embeds", &index, "author"], EMBED_AUTHOR_MAX);
        // Where an embed carries a URL, under which object, and whether an upload may be named.
        let urls = [
            (None, "url", false),
            (Some("author"), "url", false),
            (Some("author"), "icon_url", true),
            (Some("footer"), "icon_url", true),
            (Some("image"), "url", true),
            (Some("thumbnail"), "url", true),
        ];
        for (parent, key, attachment_ok) in urls {
            let object = parent.map_or(embed, |parent| &embed[parent]);
            if let Some(url) = object[key].as_str() {
                let mut path = at.to_vec();
                path.extend(parent);
                path.push(key);
                check_url(errors, &path, url, attachment_ok);
            }
        }
        if embed["color"].as_u64().is_some_and(|c| c > EMBED_COLOR_MAX) {
            errors.add(
                &["embeds", &index, "color"],
                "NUMBER_TYPE_MAX",
                format!("int value should be less than or equal to {EMBED_COLOR_MAX}."),
            );
        }
        total += chars(&embed["title"])
            + chars(&embed["description"])
            + chars(&embed["footer"]["text"])
            + chars(&embed["author"]["name"]);
        if let Some(fields) = embed["fields"].as_array() {
            if fields.len() > EMBED_FIELDS_MAX {
                errors.too_long(&["embeds", &index, "fields"], EMBED_FIELDS_MAX);
            }
            for (f, field) in fields.iter().enumerate() {
                let f = f.to_string();
                let at = ["embeds", index.as_str(), "fields", f.as_str()];
                for (key, max) in [("name", EMBED_FIELD_NAME_MAX), ("value", EMBED_FIELD_VALUE_MAX)] {
                    // Discord refuses an empty (or blank) name or value as missing.
                    if field[key].as_str().is_none_or(|text| text.trim().is_empty()) {
                        let mut path = at.to_vec();
                        path.push(key);
                        errors.required(&path);
                    }
                    check_len(errors, field, key, &at, max);
                }
                total += chars(&field["name"]) + chars(&field["value"]);
            }
        }
    }
    if total > EMBED_TOTAL_MAX {
        errors.add(
            &["embeds"],
            "MAX_EMBED_SIZE_EXCEEDED",
            format!("Embed size exceeds maximum size of {EMBED_TOTAL_MAX}"),
        );
    }
}

/// An embed's URL as Discord checks it: well formed, with the `http` or
/// `https` scheme (images and icons may also name an upload, `attachment://`).
fn check_url(errors: &mut FormErrors, path: &[&str], url: &str, attachment_ok: bool) {
    let Some((scheme, rest)) = url.split_once("://") else {
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.".to_owned());
        return;
    };
    let allowed: &[&str] = if attachment_ok { &["http", "https", "attachment"] } else { &["http", "https"] };
    if !allowed.contains(&scheme.to_ascii_lowercase().as_str()) {
        let listed = allowed.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(", ");
        errors.add(
            path,
            "URL_TYPE_INVALID_SCHEME",
            format!("Scheme \"{scheme}\" is not supported. Scheme must be one of ({listed})."),
        );
        return;
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || url.chars().any(char::is_whitespace) {
        errors.add(path, "URL_TYPE_INVALID_URL", "Not a well formed URL.".to_owned());
    }
}

fn components(errors: &mut FormErrors, rows: &Value, v2: bool) {
    let Some(rows) = rows.as_array() else {
        return;
    };
    if !v2 && rows.len() > ACTION_ROWS_MAX {
        errors.too_long(&["components"], ACTION_ROWS_MAX);
    }
    let mut seen = HashSet::new();
    for (r, row) in rows.iter().enumerate() {
        let r = r.to_string();
        if row["type"].as_u64() != Some(1) {
            if !v2 {
                errors.add(
                    &["components", &r],
                    "UNION_TYPE_CHOICES",
                    "Value of field \"type\" must be one of (1,).".to_owned(),
                );
            }
            continue;
        }
        let Some(children) = row["components"].as_array() else {
            errors.required(&["components", &r, "components"]);
            continue;
        };
        if children.len() > ROW_COMPONENTS_MAX {
            errors.too_long(&["components", &r, "components"], ROW_COMPONENTS_MAX);
        }
        for (c, child) in children.iter().enumerate() {
            let c = c.to_string();
            let at = ["components", r.as_str(), "components", c.as_str()];
            component(errors, child, &at, &mut seen);
        }
    }
}

fn component(errors: &mut FormErrors, child: &Value, at: &[&str], seen: &mut HashSet<String>) {
    let path = |key| crate::error::child(at, key);
    let kind = child["type"].as_u64().unwrap_or(0);
    let needs_custom_id = match kind {
        // Link (5) and premium (6) buttons carry no custom_id.
        2 => !matches!(child["style"].as_u64(), Some(5 | 6)),
        3 | 5..=8 => true,
        _ => false,
    };
    if kind == 2 {
        check_len(errors, child, "label", at, BUTTON_LABEL_MAX);
        if child["style"].as_u64() == Some(5) && child["url"].as_str().is_none() {
            errors.required(&path("url"));
        }
    }
    if needs_custom_id {
        match child["custom_id"].as_str() {
            None => errors.required(&path("custom_id")),
            Some(id) if !seen.insert(id.to_owned()) => errors.add(
                &path("custom_id"),
                "COMPONENT_CUSTOM_ID_DUPLICATED",
                "Component custom id cannot be duplicated".to_owned(),
            ),
            Some(_) => {}
        }
        check_len(errors, child, "custom_id", at, CUSTOM_ID_MAX);
    }
    if matches!(kind, 3 | 5..=8) {
        check_len(errors, child, "placeholder", at, SELECT_PLACEHOLDER_MAX);
    }
    if kind == 3 {
        match child["options"].as_array() {
            None => errors.required(&path("options")),
            Some(options) => {
                if options.len() > SELECT_OPTIONS_MAX {
                    errors.too_long(&path("options"), SELECT_OPTIONS_MAX);
                }
                for (o, option) in options.iter().enumerate() {
                    let o = o.to_string();
                    let mut at = path("options");
                    at.push(&o);
                    for key in ["label", "value", "description"] {
                        check_len(errors, option, key, &at, SELECT_OPTION_TEXT_MAX);
                    }
                }
            }
        }
    }
}

/// Checks a thread or channel name: required, 1–100 chars.
pub(crate) fn thread_name(errors: &mut FormErrors, name: &Value) {
    match name.as_str() {
        None => errors.required(&["name"]),
        Some(name) if name.chars().count() > THREAD_NAME_MAX => {
            errors.too_long(&["name"], THREAD_NAME_MAX);
        }
        Some("") => {
            errors.add(&["name"], "BASE_TYPE_BAD_LENGTH", format!("Must be between 1 and {THREAD_NAME_MAX} in length."))
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errors_of(body: Value) -> Value {
        message(&body, true, 0).unwrap_err().body
    }

    #[test]
    fn content_limit_counts_chars_not_bytes() {
        assert!(message(&json!({"content": "é".repeat(CONTENT_MAX)}), true, 0).is_ok());
        let body = errors_of(json!({"content": "a".repeat(CONTENT_MAX + 1)}));
        assert_eq!(body["errors"]["content"]["_errors"][0]["code"], "BASE_TYPE_MAX_LENGTH");
    }

    #[test]
    fn empty_message_is_50006_but_an_embed_alone_is_fine() {
        assert_eq!(errors_of(json!({"content": ""}))["code"], 50006);
        assert_eq!(errors_of(json!({}))["code"], 50006);
        assert!(message(&json!({"embeds": [{"title": "t"}]}), true, 0).is_ok());
        assert!(message(&json!({}), true, 1).is_ok());
        // Edits may clear content.
        assert!(message(&json!({"content": ""}), false, 0).is_ok());
    }

    #[test]
    fn embed_fields_must_have_a_name_and_value_and_urls_must_be_http() {
        let body =
            errors_of(json!({"embeds": [{"fields": [{"name": "", "value": "v"}, {"name": "n", "value": " "}]}]}));
        assert_eq!(body["code"], 50035);
        let fields = &body["errors"]["embeds"]["0"]["fields"];
        assert_eq!(fields["0"]["name"]["_errors"][0]["code"], "BASE_TYPE_REQUIRED");
        assert_eq!(fields["1"]["value"]["_errors"][0]["code"], "BASE_TYPE_REQUIRED");
        let body = errors_of(json!({"embeds": [{
            "url": "ftp://example.com/x",
            "author": {"name": "a", "url": "not a url"},
            "image": {"url": "https://"},
        }]}));
        let embed = &body["errors"]["embeds"]["0"];
        assert_eq!(embed["url"]["_errors"][0]["code"], "URL_TYPE_INVALID_SCHEME");
        assert_eq!(embed["author"]["url"]["_errors"][0]["code"], "URL_TYPE_INVALID_URL");
        assert_eq!(embed["image"]["url"]["_errors"][0]["code"], "URL_TYPE_INVALID_URL");
        let fine = json!({"embeds": [{
            "title": "t",
            "url": "https://example.com/a?b#c",
            "thumbnail": {"url": "attachment://run.png"},
            "footer": {"text": "f", "icon_url": "http://example.com/i.png"},
        }]});
        assert!(message(&fine, true, 0).is_ok());
    }

    #[test]
    fn embed_limits_at_and_past_the_edge() {
        let at = json!({"embeds": [{
            "title": "t".repeat(EMBED_TITLE_MAX),
            "description": "ü".repeat(EMBED_DESCRIPTION_MAX - EMBED_TITLE_MAX),
        }]});
        assert!(message(&at, true, 0).is_ok());
        let body = errors_of(json!({"embeds": [{"description": "d".repeat(EMBED_DESCRIPTION_MAX + 1)}]}));
        assert_eq!(
            body["errors"]["embeds"]["0"]["description"]["_errors"][0]["message"],
            "Must be 4096 or fewer in length."
        );
    }

    #[test]
    fn embed_total_is_capped_across_embeds() {
        let embed = json!({"description": "x".repeat(3000)});
        assert!(message(&json!({"embeds": [embed.clone(), embed.clone()]}), true, 0).is_ok());
        let body = errors_of(json!({"embeds": [embed.clone(), embed, {"title": "y"}]}));
        assert_eq!(body["errors"]["embeds"]["_errors"][0]["code"], "MAX_EMBED_SIZE_EXCEEDED");
    }

    #[test]
    fn field_count_and_lengths() {
        let field = json!({"name": "n", "value": "v"});
        let many: Vec<Value> = (0..=EMBED_FIELDS_MAX).map(|_| field.clone()).collect();
        let body = errors_of(json!({"embeds": [{"fields": many}]}));
        assert!(body["errors"]["embeds"]["0"]["fields"]["_errors"].is_array());
        let body = errors_of(json!({"embeds": [{"fields": [
            {"name": "n".repeat(EMBED_FIELD_NAME_MAX + 1), "value": "v".repeat(EMBED_FIELD_VALUE_MAX + 1)},
            {"value": "v"}
        ]}]}));
        let fields = &body["errors"]["embeds"]["0"]["fields"];
        assert!(fields["0"]["name"]["_errors"].is_array());
        assert!(fields["0"]["value"]["_errors"].is_array());
        assert_eq!(fields["1"]["name"]["_errors"][0]["code"], "BASE_TYPE_REQUIRED");
    }

    #[test]
    fn too_many_embeds() {
        let embeds: Vec<Value> = (0..=EMBEDS_MAX).map(|_| json!({"title": "t"})).collect();
        let body = errors_of(json!({ "embeds": embeds }));
        assert_eq!(body["errors"]["embeds"]["_errors"][0]["message"], "Must be 10 or fewer in length.");
    }

    #[test]
    fn components_rows_labels_and_custom_ids() {
        let button = |id: &str| json!({"type": 2, "style": 1, "label": "ok", "custom_id": id});
        let ok = json!({"components": [{"type": 1, "components": [button("a"), button("b")]}]});
        assert!(message(&ok, true, 0).is_ok());
        let dup = json!({"components": [{"type": 1, "components": [button("a"), button("a")]}]});
        assert_eq!(
            errors_of(dup)["errors"]["components"]["0"]["components"]["1"]["custom_id"]["_errors"][0]["code"],
            "COMPONENT_CUSTOM_ID_DUPLICATED"
        );
        let long = json!({"components": [{"type": 1, "components": [
            {"type": 2, "style": 1, "label": "l".repeat(BUTTON_LABEL_MAX + 1), "custom_id": "c".repeat(CUSTOM_ID_MAX + 1)}
        ]}]});
        let body = errors_of(long);
        let at = &body["errors"]["components"]["0"]["components"]["0"];
        assert!(at["label"]["_errors"].is_array() && at["custom_id"]["_errors"].is_array());
        let rows: Vec<Value> =
            (0..=ACTION_ROWS_MAX).map(|i| json!({"type": 1, "components": [button(&i.to_string())]})).collect();
        assert!(errors_of(json!({ "components": rows }))["errors"]["components"]["_errors"].is_array());
        let link = json!({"components": [{"type": 1, "components": [{"type": 2, "style": 5, "label": "docs", "url": "https://example.com"}]}]});
        assert!(message(&link, true, 0).is_ok());
    }

    #[test]
    fn select_options_are_capped() {
        let options: Vec<Value> =
            (0..=SELECT_OPTIONS_MAX).map(|i| json!({"label": i.to_string(), "value": i.to_string()})).collect();
        let body = errors_of(json!({"components": [{"type": 1, "components": [
            {"type": 3, "custom_id": "pick", "options": options}
        ]}]}));
        assert!(body["errors"]["components"]["0"]["components"]["0"]["options"]["_errors"].is_array());
    }

    #[test]
    fn thread_names() {
        let mut errors = FormErrors::default();
        thread_name(&mut errors, &json!("n".repeat(THREAD_NAME_MAX)));
        assert!(errors.is_empty());
        thread_name(&mut errors, &json!("n".repeat(THREAD_NAME_MAX + 1)));
        assert!(!errors.is_empty());
    }
}
