//! Creating, editing and deleting messages with Discord's checks: permissions, limits,
//! `enforce_nonce`, replies, mentions, component ids and embed defaults.

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{EmulatorState, World};
use crate::config::permissions;
use crate::error::ApiError;
use crate::model::{Author, Message};
use crate::snowflake::now_ms;
use crate::validate;

/// Options of [`World::create_message`] beyond the body.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    /// Set on interaction responses (type 20).
    pub(crate) interaction_metadata: Option<Value>,
    /// A system message type (e.g. 18, thread created).
    pub(crate) kind: Option<u8>,
    /// A fixed id (a forum post's first message has the thread's id).
    pub(crate) id: Option<u64>,
    /// A system message's reference, used as is.
    pub(crate) reference: Option<Value>,
    /// Skip the empty-message check (a deferred interaction's placeholder).
    pub(crate) allow_empty: bool,
}

pub(super) struct NonceEntry {
    channel_id: u64,
    message_id: u64,
    at: Instant,
}

impl World {
    pub(crate) fn message(&self, channel_id: u64, message_id: u64) -> Result<&Message, ApiError> {
        self.messages.get(&channel_id).and_then(|m| m.get(&message_id)).ok_or_else(ApiError::unknown_message)
    }

    pub(crate) fn message_mut(&mut self, channel_id: u64, message_id: u64) -> Result<&mut Message, ApiError> {
        self.messages.get_mut(&channel_id).and_then(|m| m.get_mut(&message_id)).ok_or_else(ApiError::unknown_message)
    }

    pub(crate) fn message_json(&self, message: &Message) -> Value {
        message.to_json(self, self.bot_id)
    }

    pub(super) fn message_state_json(&self, message: &Message) -> Value {
        let mut json = self.message_json(message);
        json["allowed_mentions"] = message.allowed_mentions.clone().unwrap_or(Value::Null);
        json
    }

    /// The MESSAGE_CREATE / MESSAGE_UPDATE payload: the message plus `guild_id` and `member`.
    pub(crate) fn message_event_json(&self, message: &Message) -> Value {
        let mut json = self.message_json(message);
        if let Some(nonce) = &message.nonce {
            json["nonce"] = nonce.clone();
        }
        if let Some(guild_id) = message.guild_id {
            json["guild_id"] = json!(guild_id.to_string());
            if let Author::User(id) = message.author
                && let Some(member) = self.guilds.get(&guild_id).and_then(|g| g.members.get(&id))
            {
                json["member"] = member.to_json();
            }
        }
        json
    }

    /// Parses mentions in `content`, limited by `allowed_mentions` like Discord.
    fn mentions(
        &self,
        content: &str,
        allowed: Option<&Value>,
        reply_author: Option<u64>,
    ) -> (Vec<u64>, Vec<u64>, bool) {
        let parse =
            |kind: &str| allowed.is_none_or(|a| a["parse"].as_array().is_some_and(|p| p.iter().any(|v| v == kind)));
        let listed = |key: &str, id: u64| {
            allowed.is_some_and(|a| {
                a[key].as_array().is_some_and(|l| l.iter().any(|v| v.as_str() == Some(&id.to_string())))
            })
        };
        let mut users = Vec::new();
        let mut roles = Vec::new();
        let mut rest = content;
        while let Some(start) = rest.find("<@") {
            rest = &rest[start + 2..];
            let Some(end) = rest.find('>') else { break };
            let inner = &rest[..end];
            if let Some(role) = inner.strip_prefix('&') {
                if let Ok(id) = role.parse::<u64>()
                    && (parse("roles") || listed("roles", id))
                    && !roles.contains(&id)
                {
                    roles.push(id);
                }
            } else if let Ok(id) = inner.trim_start_matches('!').parse::<u64>()
                && self.users.contains_key(&id)
                && (parse("users") || listed("users", id))
                && !users.contains(&id)
            {
                users.push(id);
            }
        }
        if let Some(author) = reply_author
            && allowed.is_none_or(|a| a["replied_user"].as_bool().unwrap_or(false))
            && !users.contains(&author)
        {
            users.push(author);
        }
        let everyone = (content.contains("@everyone") || content.contains("@here")) && parse("everyone");
        (users, roles, everyone)
    }

    /// Creates a message after Discord's checks, dispatches MESSAGE_CREATE, and returns the
    /// message object as the create response shows it.
    pub(crate) fn create_message(
        &mut self,
        state: &EmulatorState,
        channel_id: u64,
        author: Author,
        body: &Value,
        attachments: Vec<Value>,
        extras: Extras,
    ) -> Result<Value, ApiError> {
        let Extras { interaction_metadata, kind, id, reference: system_reference, allow_empty } = extras;
        let channel = self.channels.get(&channel_id).ok_or_else(ApiError::unknown_channel)?;
        // A forum takes posts (`POST /channels/{id}/threads`), never messages; live Discord
        // answers 50008 there, as for a category.
        if matches!(channel.kind, 4 | 15 | 16) {
            return Err(ApiError::not_a_text_channel());
        }
        if matches!(channel.kind, 2 | 13) {
            return Err(ApiError::wrong_channel_type());
        }
        let is_thread = channel.is_thread();
        let guild_id = channel.guild_id;
        let author_id = match &author {
            Author::User(id) => Some(*id),
            Author::Webhook { .. } => None,
        };
        if let Some(user_id) = author_id {
            let perms = self.permissions(user_id, channel_id);
            if perms & permissions::VIEW_CHANNEL == 0 {
                return Err(ApiError::missing_access());
            }
            let send = if is_thread { permissions::SEND_MESSAGES_IN_THREADS } else { permissions::SEND_MESSAGES };
            if perms & send == 0 {
                return Err(ApiError::missing_permissions());
            }
            if let Some(thread) = &channel.thread
                && thread.archived
                && thread.locked
                && perms & permissions::MANAGE_THREADS == 0
            {
                return Err(ApiError::thread_archived());
            }
        }
        if !allow_empty {
            validate::message(body, true, attachments.len())?;
        }

        // `enforce_nonce`: the same author and nonce within the window get the first message.
        let nonce = match &body["nonce"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        let author_key = match &author {
            Author::User(id) | Author::Webhook { id, .. } => *id,
        };
        let now = Instant::now();
        let window = state.config().nonce_window;
        self.nonces.retain(|_, e| now.duration_since(e.at) < window);
        if body["enforce_nonce"].as_bool() == Some(true)
            && let Some(nonce) = &nonce
            && let Some(entry) = self.nonces.get(&(author_key, nonce.clone()))
            && let Ok(first) = self.message(entry.channel_id, entry.message_id)
        {
            let mut json = self.message_json(first);
            json["nonce"] = body["nonce"].clone();
            return Ok(json);
        }

        let reference = match body["message_reference"].as_object().filter(|_| system_reference.is_none()) {
            Some(reference) => {
                let target = reference.get("message_id").and_then(Value::as_str).and_then(|s| s.parse::<u64>().ok());
                let target_channel = reference
                    .get("channel_id")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(channel_id);
                match target.map(|t| self.message(target_channel, t)) {
                    Some(Ok(replied)) => Some((replied.id, target_channel, replied.author_id())),
                    _ if reference.get("fail_if_not_exists").and_then(Value::as_bool) == Some(false) => None,
                    _ => {
                        let mut errors = crate::error::FormErrors::default();
                        errors.add(
                            &["message_reference"],
                            "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                            "Unknown message".to_owned(),
                        );
                        return Err(errors.into_result().expect_err("an error was added"));
                    }
                }
            }
            None => None,
        };
        let content = body["content"].as_str().unwrap_or("").to_owned();
        let allowed = body.get("allowed_mentions").filter(|v| v.is_object()).cloned();
        let (mentions, mention_roles, mention_everyone) =
            self.mentions(&content, allowed.as_ref(), reference.map(|r| r.2));
        let id = id.unwrap_or_else(|| state.next_id());
        let embeds =
            body["embeds"].as_array().map(|embeds| embeds.iter().map(normalize_embed).collect()).unwrap_or_default();
        let position = if let Some(thread) = self.channels.get_mut(&channel_id).and_then(|c| c.thread.as_mut()) {
            thread.message_count += 1;
            thread.total_message_sent += 1;
            Some(thread.total_message_sent - 1)
        } else {
            None
        };
        let application_id = match &author {
            Author::User(id) if *id == self.bot_id => Some(self.application_id),
            _ => None,
        }
        .filter(|_| interaction_metadata.is_some());
        // SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS, IS_COMPONENTS_V2; LOADING only
        // for a deferred interaction's placeholder.
        let settable_flags = (1 << 2) | (1 << 6) | (1 << 12) | (1 << 15) | if allow_empty { 1 << 7 } else { 0 };
        let message = Message {
            id,
            channel_id,
            guild_id,
            author,
            content,
            edited_ms: None,
            tts: body["tts"].as_bool().unwrap_or(false),
            mention_everyone,
            mentions,
            mention_roles,
            attachments,
            embeds,
            components: body["components"].as_array().map(|c| number_components(c)).unwrap_or_default(),
            pinned: false,
            kind: if let Some(kind) = kind {
                kind
            } else if interaction_metadata.is_some() {
                20
            } else if reference.is_some() {
                19
            } else {
                0
            },
            flags: body["flags"].as_u64().unwrap_or(0) & settable_flags,
            nonce: body.get("nonce").filter(|n| !n.is_null()).cloned(),
            application_id,
            message_reference: system_reference.or_else(|| {
                reference.map(|(message_id, channel, _)| {
                    let mut r =
                        json!({"type": 0, "message_id": message_id.to_string(), "channel_id": channel.to_string()});
                    if let Some(g) = guild_id {
                        r["guild_id"] = json!(g.to_string());
                    }
                    r
                })
            }),
            interaction_metadata,
            thread_id: None,
            position,
            reactions: Vec::new(),
            allowed_mentions: allowed,
        };
        if let Some(nonce) = nonce {
            self.nonces.insert((author_key, nonce), NonceEntry { channel_id, message_id: id, at: now });
        }
        let mut response = self.message_json(&message);
        if let Some(nonce) = &message.nonce {
            response["nonce"] = nonce.clone();
        }
        if let Some((replied, channel, _)) = reference
            && let Ok(replied) = self.message(channel, replied)
        {
            response["referenced_message"] = self.message_json(replied);
        }
        let mut event = self.message_event_json(&message);
        if let Some(referenced) = response.get("referenced_message") {
            event["referenced_message"] = referenced.clone();
        }
        self.messages.entry(channel_id).or_default().insert(id, message);
        if let Some(channel) = self.channels.get_mut(&channel_id) {
            channel.last_message_id = Some(id);
        }
        self.unarchive_on_activity(channel_id);
        // Ephemeral messages are for the invoking user only: the bot gets no event.
        if event["flags"].as_u64().unwrap_or(0) & crate::interaction::EPHEMERAL == 0 {
            self.dispatch("MESSAGE_CREATE", event);
        }
        state.touch();
        Ok(response)
    }

    /// Edits a message's content, embeds, components, flags or allowed mentions, and
    /// dispatches MESSAGE_UPDATE.
    pub(crate) fn edit_message(
        &mut self,
        channel_id: u64,
        message_id: u64,
        body: &Value,
        attachments: Option<Vec<Value>>,
    ) -> Result<Value, ApiError> {
        validate::message(body, false, 0)?;
        let allowed = body.get("allowed_mentions").filter(|v| v.is_object()).cloned();
        let content = body["content"].as_str().map(str::to_owned);
        let mentions = content.as_deref().map(|c| self.mentions(c, allowed.as_ref(), None));
        let message = self.message_mut(channel_id, message_id)?;
        if let Some(content) = content {
            message.content = content;
        }
        if let Some((users, roles, everyone)) = mentions {
            message.mentions = users;
            message.mention_roles = roles;
            message.mention_everyone = everyone;
        }
        if let Some(embeds) = body["embeds"].as_array() {
            message.embeds = embeds.iter().map(normalize_embed).collect();
        } else if body.get("embeds").is_some_and(Value::is_null) {
            message.embeds.clear();
        }
        if let Some(components) = body["components"].as_array() {
            message.components = number_components(components);
        } else if body.get("components").is_some_and(Value::is_null) {
            message.components.clear();
        }
        if let Some(flags) = body["flags"].as_u64() {
            // Only SUPPRESS_EMBEDS can be toggled on edit.
            message.flags = (message.flags & !(1 << 2)) | (flags & (1 << 2));
        }
        if let Some(attachments) = attachments {
            message.attachments = attachments;
        } else if let Some(keep) = body["attachments"].as_array() {
            let keep: Vec<&str> = keep.iter().filter_map(|a| a["id"].as_str()).collect();
            message.attachments.retain(|a| a["id"].as_str().is_some_and(|id| keep.contains(&id)));
        }
        if allowed.is_some() {
            message.allowed_mentions = allowed;
        }
        if !self.message(channel_id, message_id)?.has_payload() {
            return Err(ApiError::empty_message());
        }
        self.message_mut(channel_id, message_id)?.edited_ms = Some(now_ms());
        let message = self.message(channel_id, message_id)?;
        let json = self.message_json(message);
        let event = self.message_event_json(message);
        self.dispatch("MESSAGE_UPDATE", event);
        Ok(json)
    }

    /// Deletes a message and dispatches MESSAGE_DELETE.
    pub(crate) fn delete_message(&mut self, channel_id: u64, message_id: u64) -> Result<(), ApiError> {
        let message = self
            .messages
            .get_mut(&channel_id)
            .and_then(|m| m.remove(&message_id))
            .ok_or_else(ApiError::unknown_message)?;
        if let Some(thread) = self.channels.get_mut(&channel_id).and_then(|c| c.thread.as_mut()) {
            thread.message_count = thread.message_count.saturating_sub(1);
        }
        let mut event = json!({"id": message_id.to_string(), "channel_id": channel_id.to_string()});
        if let Some(guild_id) = message.guild_id {
            event["guild_id"] = json!(guild_id.to_string());
        }
        self.dispatch("MESSAGE_DELETE", event);
        Ok(())
    }
}

impl Message {
    fn has_payload(&self) -> bool {
        !self.content.is_empty()
            || !self.embeds.is_empty()
            || !self.components.is_empty()
            || !self.attachments.is_empty()
    }
}

/// Discord numbers every component of a message (`id`, in tree order) unless given one.
fn number_components(components: &[Value]) -> Vec<Value> {
    fn walk(component: &mut Value, next: &mut u64) {
        if let Some(object) = component.as_object_mut() {
            if !object.contains_key("id") {
                object.insert("id".into(), json!(*next));
            }
            *next += 1;
            if let Some(children) = object.get_mut("components").and_then(Value::as_array_mut) {
                for child in children {
                    walk(child, next);
                }
            }
            if let Some(accessory) = object.get_mut("accessory") {
                walk(accessory, next);
            }
        }
    }
    let mut next = 1;
    let mut numbered = components.to_vec();
    for component in &mut numbered {
        walk(component, &mut next);
    }
    numbered
}

/// Discord fills in `type: "rich"` and drops nulls; keep what was sent otherwise.
fn normalize_embed(embed: &Value) -> Value {
    let mut embed = embed.clone();
    if let Some(object) = embed.as_object_mut() {
        object.retain(|_, v| !v.is_null());
        object.entry("type").or_insert_with(|| json!("rich"));
        if let Some(fields) = object.get_mut("fields").and_then(Value::as_array_mut) {
            for field in fields {
                if let Some(field) = field.as_object_mut() {
                    field.entry("inline").or_insert(json!(false));
                }
            }
        }
    }
    embed
}
