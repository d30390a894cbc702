//! Response shapes checked against Discord's OpenAPI description (a vendored subset of
//! `discord/discord-api-spec`, see `tests/fixtures/discord-openapi-subset.json`).

use omp_discord_emulator::*;
use serde_json::{Map, Value, json};

use crate::support::call;

fn schemas() -> Map<String, Value> {
    let text = include_str!("../fixtures/discord-openapi-subset.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    fixture["schemas"].as_object().unwrap().clone()
}

/// A small JSON Schema (2020-12 subset as the spec uses it) checker. `oneOf` is checked as
/// "at least one", because the spec's unions overlap. Unvendored `$ref`s are not checked.
struct Checker {
    schemas: Map<String, Value>,
    errors: Vec<String>,
}

impl Checker {
    fn check(&mut self, value: &Value, schema: &Value, path: &str) -> bool {
        let before = self.errors.len();
        self.visit(value, schema, path);
        self.errors.len() == before
    }

    fn fits(&self, value: &Value, schema: &Value) -> bool {
        let mut probe = Checker { schemas: self.schemas.clone(), errors: Vec::new() };
        probe.check(value, schema, "")
    }

    fn visit(&mut self, value: &Value, schema: &Value, path: &str) {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.rsplit('/').next().unwrap();
            if let Some(target) = self.schemas.get(name).cloned() {
                self.visit(value, &target, path);
            }
            return;
        }
        if let Some(types) = schema.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let fits = allowed.iter().any(|t| match *t {
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "null" => value.is_null(),
                "object" => value.is_object(),
                "array" => value.is_array(),
                _ => true,
            });
            if !fits {
                self.errors.push(format!("{path}: {value} is not {allowed:?}"));
                return;
            }
        }
        if let Some(options) = schema["enum"].as_array()
            && !options.contains(value)
        {
            self.errors.push(format!("{path}: {value} is not one of {options:?}"));
        }
        if let Some(constant) = schema.get("const")
            && constant != value
        {
            self.errors.push(format!("{path}: {value} is not {constant}"));
        }
        if schema["format"] == "snowflake" && value.as_str().is_some_and(|s| s.parse::<u64>().is_err()) {
            self.errors.push(format!("{path}: {value} is not a snowflake"));
        }
        if let Some(max) = schema["maxLength"].as_u64()
            && value.as_str().is_some_and(|s| s.chars().count() as u64 > max)
        {
            self.errors.push(format!("{path}: longer than {max}"));
        }
        for all in schema["allOf"].as_array().into_iter().flatten() {
            self.visit(value, all, path);
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(options) = schema[key].as_array()
                && !options.iter().any(|o| self.fits(value, o))
            {
                self.errors.push(format!("{path}: matches none of {key}"));
            }
        }
        if let Some(object) = value.as_object() {
            for required in schema["required"].as_array().into_iter().flatten() {
                let key = required.as_str().unwrap();
                if !object.contains_key(key) {
                    self.errors.push(format!("{path}: missing required {key}"));
                }
            }
            let properties = schema["properties"].as_object();
            for (key, child) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(child_schema) => self.visit(child, child_schema, &format!("{path}.{key}")),
                    None if schema["additionalProperties"] == false => {
                        self.errors.push(format!("{path}: unexpected property {key}"));
                    }
                    None => {}
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                self.visit(item, items, &format!("{path}[{i}]"));
            }
        }
    }
}

fn assert_shape(value: &Value, schema_name: &str) {
    let schemas = schemas();
    let schema = schemas.get(schema_name).unwrap_or_else(|| panic!("{schema_name} is vendored")).clone();
    let mut checker = Checker { schemas, errors: Vec::new() };
    checker.check(value, &schema, schema_name);
    assert!(checker.errors.is_empty(), "{schema_name} mismatches: {:#?}\nvalue: {value:#}", checker.errors);
}

fn assert_each(value: &Value, schema_name: &str) {
    let items = value.as_array().unwrap_or_else(|| panic!("{value} is an array"));
    assert!(!items.is_empty(), "an empty list checks nothing");
    for item in items {
        assert_shape(item, schema_name);
    }
}

#[test]
fn the_checker_rejects_a_wrong_shape() {
    let schemas = schemas();
    let mut checker = Checker { schemas: schemas.clone(), errors: Vec::new() };
    let broken = json!({"id": 5, "username": "x"});
    assert!(!checker.check(&broken, &schemas["UserResponse"], "user"));
    assert!(checker.errors.iter().any(|e| e.contains("missing required")), "{:?}", checker.errors);
}

#[tokio::test]
async fn rest_responses_match_discords_openapi_schemas() {
    let state = EmulatorState::new(EmulatorConfig { rate_limits: false, ..EmulatorConfig::default() });
    let get = |path: String| {
        let state = state.clone();
        async move { call(&state, "GET", &format!("/api/v10{path}"), None).await.body }
    };
    assert_shape(&get("/users/@me".into()).await, "UserPIIResponse");
    assert_shape(&get("/gateway/bot".into()).await, "GatewayBotResponse");
    assert_shape(&get("/oauth2/applications/@me".into()).await, "PrivateApplicationResponse");
    assert_shape(&get(format!("/channels/{DEFAULT_HOME_CHANNEL_ID}")).await, "GuildChannelResponse");
    assert_shape(&get(format!("/guilds/{DEFAULT_GUILD_ID}")).await, "GuildResponse");
    assert_each(&get(format!("/guilds/{DEFAULT_GUILD_ID}/roles")).await, "GuildRoleResponse");
    assert_shape(
        &get(format!("/guilds/{DEFAULT_GUILD_ID}/members/{DEFAULT_OWNER_USER_ID}")).await,
        "GuildMemberResponse",
    );

    let messages = format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/messages");
    let first = call(&state, "POST", &messages, Some(json!({"content": "plain", "nonce": "1"}))).await.body;
    assert_shape(&first, "MessageResponse");
    let rich = call(
        &state,
        "POST",
        &messages,
        Some(json!({
            "content": format!("<@{DEFAULT_OWNER_USER_ID}> look"),
            "embeds": [{"title": "Run", "description": "done", "color": 5_793_266,
                        "fields": [{"name": "tool", "value": "bash", "inline": true}],
                        "footer": {"text": "omp"}, "author": {"name": "agent"}}],
            "components": [{"type": 1, "components": [
                {"type": 2, "style": 1, "label": "Approve", "custom_id": "a"},
                {"type": 2, "style": 5, "label": "Docs", "url": "https://example.com"}]}],
            "message_reference": {"message_id": first["id"]},
        })),
    )
    .await
    .body;
    assert_shape(&rich, "MessageResponse");
    let rich_id = rich["id"].as_str().unwrap().to_owned();
    call(&state, "PUT", &format!("{messages}/{rich_id}/reactions/%F0%9F%91%8D/@me"), None).await;
    assert_each(&get(format!("/channels/{DEFAULT_HOME_CHANNEL_ID}/messages")).await, "MessageResponse");

    let thread = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/threads"),
        Some(json!({"name": "session", "type": 11})),
    )
    .await;
    assert_eq!(thread.status, 201, "Discord answers thread creation with 201");
    assert_shape(&thread.body, "CreatedThreadResponse");
    let thread_id = thread.body["id"].as_str().unwrap().to_owned();
    assert_shape(&get(format!("/channels/{thread_id}")).await, "ThreadResponse");
    assert_each(&get(format!("/channels/{thread_id}/thread-members")).await, "ThreadMemberResponse");
    let from_message = call(&state, "POST", &format!("{messages}/{rich_id}/threads"), Some(json!({"name": "t"}))).await;
    assert_eq!(from_message.status, 201);
    assert_shape(&from_message.body, "ThreadResponse");

    let commands = call(
        &state,
        "PUT",
        &format!("/api/v10/applications/{DEFAULT_APPLICATION_ID}/commands"),
        Some(json!([{"name": "omp", "description": "Ask OMP"}])),
    )
    .await
    .body;
    assert_each(&commands, "ApplicationCommandResponse");
    let hook = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/webhooks"),
        Some(json!({"name": "notify"})),
    )
    .await
    .body;
    assert_shape(&hook, "GuildIncomingWebhookResponse");
}
