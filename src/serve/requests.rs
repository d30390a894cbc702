//! What the model's tools ask of Discord besides posting: reading a channel
//! (`discord_read`), listing guilds and channels (`discord_channels`), and
//! asking the people in a session's thread (`discord_ask`).

use std::time::Duration;

use omp_discord_core::ask::{AskState, question_message, settled_message};
use omp_discord_core::format::project_name;
use omp_discord_core::protocol::{
    AttachmentInfo, ChannelInfo, ChannelMessage, ErrorCode, GuildInfo, ServerFrame, SessionRef,
};
use tokio::sync::oneshot;
use twilight_model::channel::{ChannelType, Message};
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, MessageMarker, UserMarker};

use super::discord::SendError;
use super::{Sidecar, now_ms, parse_id, record_session};
use crate::store::Ask;

/// Longest message text `discord_read` passes on, in characters.
const MAX_READ_CHARS: usize = 4000;
/// Discord's "Missing Access": the bot cannot see the channel.
const MISSING_ACCESS: u64 = 50_001;

/// The outcome of a question: answered (the answer, who) or not (why).
pub(super) type AskOutcome = (bool, String, Option<String>);

fn not_configured(id: String) -> ServerFrame {
    ServerFrame::Error {
        id: Some(id),
        code: ErrorCode::NotConfigured,
        message: "omp-discord serve has no Discord bot token: set OMP_DISCORD_TOKEN (or run `omp-discord setup`), \
                  then restart it (`omp-discord stop`)"
            .into(),
    }
}

/// A failed request as an error frame, with what to do about it.
/// Discord's "Cannot send messages in a non-text channel" (a forum, a category).
const NOT_A_TEXT_CHANNEL: u64 = 50_008;

pub(super) fn error_frame(id: String, err: &SendError) -> ServerFrame {
    let code = match err {
        SendError::Rejected { code, .. } if *code == super::UNKNOWN_CHANNEL || *code == MISSING_ACCESS => {
            ErrorCode::UnknownChannel
        }
        SendError::Rejected { .. } => ErrorCode::DiscordRejected,
        SendError::Unauthorized | SendError::Unavailable { .. } => ErrorCode::DiscordUnavailable,
    };
    let hint = match err {
        _ if code == ErrorCode::UnknownChannel => {
            "; the channel does not exist or the bot cannot see it (list the ones it can with discord_channels)"
        }
        SendError::Rejected { code: NOT_A_TEXT_CHANNEL, .. } => {
            "; a forum (or category) takes no plain messages: send to one of its posts (a thread id) instead"
        }
        _ => "",
    };
    ServerFrame::Error { id: Some(id), code, message: format!("{err}{hint}") }
}

fn display_name(user: &twilight_model::user::User) -> String {
    user.global_name.clone().unwrap_or_else(|| user.name.clone())
}

fn channel_message(message: &Message) -> ChannelMessage {
    let mut content = message.content.clone();
    for embed in &message.embeds {
        let parts: Vec<&str> = [embed.title.as_deref(), embed.description.as_deref()].into_iter().flatten().collect();
        if !parts.is_empty() {
            content.push_str(&format!("\n[embed] {}", parts.join(": ")));
        }
    }
    if content.chars().count() > MAX_READ_CHARS {
        content = content.chars().take(MAX_READ_CHARS).collect::<String>() + " … [cut]";
    }
    ChannelMessage {
        id: message.id.to_string(),
        author_id: message.author.id.to_string(),
        author: display_name(&message.author),
        bot: message.author.bot,
        content: content.trim().to_owned(),
        timestamp: message.timestamp.iso_8601().to_string(),
        attachments: message
            .attachments
            .iter()
            .map(|a| AttachmentInfo { filename: a.filename.clone(), size: a.size, url: a.url.clone() })
            .collect(),
    }
}

fn channel_kind(kind: ChannelType) -> Option<&'static str> {
    Some(match kind {
        ChannelType::GuildText => "text",
        ChannelType::GuildForum => "forum",
        ChannelType::GuildAnnouncement => "announcement",
        ChannelType::GuildVoice | ChannelType::GuildStageVoice => "voice",
        ChannelType::PublicThread | ChannelType::PrivateThread | ChannelType::AnnouncementThread => "thread",
        _ => return None,
    })
}

impl Sidecar {
    /// `discord_read`: the newest messages of a channel, or of the session's
    /// thread (older than `before`, or the oldest newer than `after`).
    pub(super) async fn read(
        &self,
        id: String,
        channel_id: Option<String>,
        session: Option<SessionRef>,
        limit: u8,
        before: Option<String>,
        after: Option<String>,
    ) -> ServerFrame {
        let Some(discord) = &self.discord else { return not_configured(id) };
        let unknown =
            |id: String, message: String| ServerFrame::Error { id: Some(id), code: ErrorCode::UnknownChannel, message };
        let channel: Id<ChannelMarker> = match (channel_id, session) {
            (Some(raw), _) => match parse_id(&raw) {
                Some(channel) => channel,
                None => {
                    return unknown(
                        id,
                        format!("{:?} is not a channel id", omp_discord_core::redact::redact_text(&raw)),
                    );
                }
            },
            (None, Some(session)) => {
                let thread = self.with_outbox(|o| o.session(&session.id)).ok().flatten().and_then(|s| s.thread_id);
                match thread.as_deref().and_then(parse_id) {
                    Some(thread) => thread,
                    None => {
                        return unknown(
                            id,
                            "this session has no Discord thread yet (nothing was posted for it); name a channelId, \
                             or post with discord_notify first"
                                .into(),
                        );
                    }
                }
            }
            (None, None) => return unknown(id, "name the channel to read (channelId)".into()),
        };
        let before: Option<Id<MessageMarker>> = before.as_deref().and_then(parse_id);
        let read = match after.as_deref().and_then(parse_id) {
            // Oldest first from Discord's client; the answer lists newest first like any read.
            Some(after) => discord.channel_messages_after(channel, after, limit).await.map(|mut messages| {
                messages.reverse();
                messages
            }),
            None => discord.channel_messages(channel, limit, before).await,
        };
        match read {
            Ok(messages) => ServerFrame::Messages {
                id,
                channel_id: channel.to_string(),
                messages: messages.iter().map(channel_message).collect(),
            },
            Err(err) => error_frame(id, &err),
        }
    }

    /// `discord_channels` / `discord_guilds`: the guilds the bot is in, each
    /// with the channels it can post in or read.
    pub(super) async fn directory(&self, id: String, guild_id: Option<String>) -> ServerFrame {
        let Some(discord) = &self.discord else { return not_configured(id) };
        let guilds = match discord.guilds().await {
            Ok(guilds) => guilds,
            Err(err) => return error_frame(id, &err),
        };
        let home = self.config.home_channel;
        let mut out = Vec::new();
        for guild in guilds.into_iter().filter(|g| guild_id.as_deref().is_none_or(|wanted| g.id.to_string() == wanted))
        {
            let mut channels = match discord.guild_channels(guild.id).await {
                Ok(channels) => channels,
                Err(err) => return error_frame(id, &err),
            };
            channels.sort_by_key(|c| (c.position.unwrap_or(0), c.id));
            let channels = channels
                .iter()
                .filter_map(|c| {
                    Some(ChannelInfo {
                        id: c.id.to_string(),
                        name: c.name.clone().unwrap_or_default(),
                        kind: channel_kind(c.kind)?.to_owned(),
                        parent_id: c.parent_id.map(|p| p.to_string()),
                        home: Some(c.id) == home,
                    })
                })
                .collect();
            out.push(GuildInfo { id: guild.id.to_string(), name: guild.name, channels });
        }
        if let Some(wanted) = guild_id.filter(|_| out.is_empty()) {
            return ServerFrame::Error {
                id: Some(id),
                code: ErrorCode::UnknownChannel,
                message: format!(
                    "the bot is in no server (guild) with id {wanted}; call discord_channels without guildId to list them"
                ),
            };
        }
        ServerFrame::Directory { id, guilds: out }
    }

    /// `discord_ask`: posts the question in the session's thread (once per
    /// call, even when asked again after a reconnect) and waits for the
    /// first answer from an allowed person, or the deadline.
    pub(super) async fn ask(
        &self,
        id: String,
        session: SessionRef,
        ask_id: String,
        question: String,
        options: Vec<String>,
        timeout_secs: u64,
    ) -> ServerFrame {
        let answer = |answered: bool, text: String, by: Option<String>| ServerFrame::Answer {
            id: id.clone(),
            answered,
            text,
            by,
        };
        if self.discord.is_none() || self.config.home_channel.is_none() {
            return answer(
                false,
                "no one can answer: omp-discord serve has no Discord token or home channel".into(),
                None,
            );
        }
        let now = now_ms();
        let deadline = now.saturating_add(i64::try_from(timeout_secs.saturating_mul(1000)).unwrap_or(i64::MAX));
        let created = self.with_outbox(|o| {
            record_session(o, &session, "", now)?;
            o.ask_for(&session.id, &ask_id, &question, &options, now, deadline)
        });
        let (ask, new) = match created {
            Ok(created) => created,
            Err(err) => return answer(false, format!("the question could not be recorded ({err})"), None),
        };
        let (tx, rx) = oneshot::channel();
        self.ask_waiters.lock().expect("ask waiters lock").entry(ask.ask_id).or_default().push(tx);
        // Answered while we registered (or before a reconnect): answer from the record.
        if let Ok(Some(current)) = self.with_outbox(|o| o.ask(ask.ask_id))
            && current.state != AskState::Pending
        {
            return answer(current.state == AskState::Answered, outcome_text(&current), current.answered_by);
        }
        let project = project_name(session.cwd.as_deref().unwrap_or_default());
        if new {
            let message = question_message(ask.ask_id, &question, &options, &project);
            if let Err(err) = self.journal_for_session(&session.id, &ask_key(ask.ask_id), false, &message) {
                return answer(false, format!("the question could not be sent ({err})"), None);
            }
            tracing::info!(audit = true, ask_id = ask.ask_id, session_id = %session.id, "question asked");
        }
        let wait = Duration::from_millis(u64::try_from(ask.deadline_ms.saturating_sub(now_ms())).unwrap_or(0));
        tokio::select! {
            outcome = rx => match outcome {
                Ok((answered, text, by)) => answer(answered, text, by),
                Err(_) => answer(false, "the sidecar stopped before anyone answered".into(), None),
            },
            () = tokio::time::sleep(wait) => {
                let text = format!("no one answered within {timeout_secs} s");
                self.settle_ask(&ask, AskState::Expired, None, None, &format!("Unanswered after {timeout_secs} s"), &project);
                match self.with_outbox(|o| o.ask(ask.ask_id)) {
                    Ok(Some(current)) if current.state == AskState::Answered => {
                        answer(true, outcome_text(&current), current.answered_by)
                    }
                    _ => answer(false, text, None),
                }
            }
            () = self.shutdown.cancelled() => answer(false, "the sidecar is stopping".into(), None),
        }
    }

    /// Records the first outcome of a question, replaces the question with
    /// its outcome in the thread, and wakes whoever waits. False when it was
    /// settled already.
    pub(super) fn settle_ask(
        &self,
        ask: &Ask,
        state: AskState,
        answer: Option<&str>,
        by: Option<&str>,
        headline: &str,
        project: &str,
    ) -> bool {
        match self.with_outbox(|o| o.settle_ask(ask.ask_id, state, answer, by, now_ms())) {
            Ok(true) => {}
            Ok(false) => return false,
            Err(err) => {
                tracing::error!(error = %err, "cannot record an answer");
                return false;
            }
        }
        tracing::info!(audit = true, ask_id = ask.ask_id, state = state.as_str(), by, "question settled");
        let answered = state == AskState::Answered;
        let message = settled_message(&ask.question, headline, answered, project);
        let _ = self.journal_for_session(&ask.session_id, &ask_key(ask.ask_id), true, &message);
        let text = match answer {
            Some(answer) => answer.to_owned(),
            None => headline.to_lowercase(),
        };
        let waiters = self.ask_waiters.lock().expect("ask waiters lock").remove(&ask.ask_id).unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.send((answered, text.clone(), by.map(str::to_owned)));
        }
        true
    }

    /// A reply in a session's thread that answers its open free-text
    /// question; false when no question is open (the reply is for OMP then).
    pub(super) fn answer_from_thread(&self, session_id: &str, author: Id<UserMarker>, name: &str, text: &str) -> bool {
        let Ok(Some(ask)) = self.with_outbox(|o| o.open_free_text_ask(session_id, now_ms())) else { return false };
        let project = self.project_of(session_id);
        let text: String = text.trim().chars().take(MAX_READ_CHARS).collect();
        tracing::debug!(user_id = %author, ask_id = ask.ask_id, "reply answers a question");
        self.settle_ask(
            &ask,
            AskState::Answered,
            Some(&text),
            Some(name),
            &format!("Answered by {name}: {text}"),
            &project,
        )
    }
}

/// The outbox key of a question's message (edited once settled).
fn ask_key(ask_id: i64) -> String {
    format!("ask:{ask_id}")
}

fn outcome_text(ask: &Ask) -> String {
    match (ask.state, &ask.answer) {
        (AskState::Answered, Some(answer)) => answer.clone(),
        _ => "no one answered in time".into(),
    }
}
