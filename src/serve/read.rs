//! What the model's tools read from Discord: a channel's messages
//! (`discord_read`) and the guilds and channels the bot sees
//! (`discord_channels`); and how a failed request reads as an error frame.

use omp_discord_core::protocol::{
    AttachmentInfo, ChannelInfo, ChannelMessage, ErrorCode, GuildInfo, ServerFrame, SessionRef,
};
use twilight_model::channel::{ChannelType, Message};
use twilight_model::id::Id;
use twilight_model::id::marker::{ChannelMarker, MessageMarker};

use super::{Sidecar, parse_id};
use crate::discord::SendError;
use crate::discord::codes::{MISSING_ACCESS, NOT_A_TEXT_CHANNEL, UNKNOWN_CHANNEL};

/// Longest message text `discord_read` passes on, in characters.
pub(super) const MAX_READ_CHARS: usize = 4000;

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
pub(super) fn error_frame(id: String, err: &SendError) -> ServerFrame {
    let code = match err {
        SendError::Rejected { code, .. } if *code == UNKNOWN_CHANNEL || *code == MISSING_ACCESS => {
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
}
