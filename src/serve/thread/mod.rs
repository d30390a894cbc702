//! A session's thread: opened from a starter message (the session card) in
//! the home channel, or as a forum post (`forum`), each step recorded so a
//! crash resumes instead of opening a second one.
//!
//! # Layout
//!
//! - this module: opening, renaming and finding a session's thread and starter.
//! - `forum`: forum channels, where a session is a post.

mod forum;

use super::{Sidecar, parse_id};
use crate::discord::codes::THREAD_ALREADY_CREATED;
use crate::discord::{Discord, SendError};
use crate::store::OutboxError;
pub(super) use forum::Forums;
use omp_discord_core::embed::MessagePayload;
use omp_discord_core::format::project_name;
use omp_discord_core::templates::{SessionStart, session_started};
use omp_discord_core::thread::thread_name;
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;
use twilight_model::id::marker::MessageMarker;

impl Sidecar {
    /// The thread of `session_id`, opening it when it does not exist yet: in a
    /// text channel, the starter message, then a thread from it; in a forum,
    /// a post (see `forum`). Each step is recorded, so a crash in between
    /// resumes instead of opening a second one.
    /// `starter` is the session card to open it with (else a default one);
    /// the answer says whether that card was posted here. A thread opened
    /// before the first prompt was known is renamed once it is.
    pub(super) async fn ensure_thread(
        &self,
        discord: &Discord,
        session_id: &str,
        starter: Option<&MessagePayload>,
    ) -> Result<(Id<ChannelMarker>, bool), SendError> {
        let record = |err: OutboxError| SendError::Unavailable { attempts: 0, last: err.to_string() };
        let session = self.with_outbox(|o| o.session(session_id)).map_err(record)?;
        let Some(session) = session else {
            return Err(SendError::Unavailable { attempts: 0, last: "the session record is missing".into() });
        };
        // Chosen once and kept, so a changed `[[projects]]` never splits a session's messages.
        let home = match session.channel_id.as_deref().and_then(parse_id) {
            Some(channel) => channel,
            None => {
                let cwd = session.cwd.as_deref().unwrap_or_default();
                let channel = self.config.channel_for(cwd).expect("notify refuses requests without a home channel");
                self.with_outbox(|o| o.set_channel(session_id, &channel.to_string())).map_err(record)?;
                channel
            }
        };
        let name = thread_name(&project_name(session.cwd.as_deref().unwrap_or_default()), session.prompt.as_deref());
        if let Some(thread) = session.thread_id.as_deref().and_then(parse_id) {
            if !session.named_with_prompt && session.prompt.is_some() {
                // Best effort: the name is cosmetic, the message must still go out.
                match discord.rename_channel(thread, &name).await {
                    Ok(()) => {
                        let _ = self.with_outbox(|o| o.set_named_with_prompt(session_id, true));
                    }
                    Err(err) => tracing::debug!(error = %err, "could not rename a thread"),
                }
            }
            return Ok((thread, false));
        }
        let default_card;
        let card = match starter {
            Some(card) => card,
            None => {
                default_card = session_started(&SessionStart {
                    cwd: session.cwd.clone().unwrap_or_default(),
                    host: session.host.clone(),
                    model: None,
                    prompt: session.prompt.clone(),
                });
                &default_card
            }
        };
        let kind = self.home(discord, home).await?;
        if kind.forum {
            let named = session.prompt.is_some();
            let post = self.open_forum_post(discord, session_id, home, &kind, &name, card, named).await?;
            return Ok((post, starter.is_some()));
        }
        let (starter_id, posted_card) = match session.starter_message_id.as_deref().and_then(parse_id) {
            Some(starter) => (starter, false),
            None => {
                let nonce = session.starter_nonce.parse().unwrap_or_default();
                crate::failpoint::hit("before_starter");
                let (_, id) = discord.create_message(home, card, nonce).await?;
                crate::failpoint::hit("after_starter_before_record");
                self.with_outbox(|o| o.set_starter(session_id, &id.to_string())).map_err(record)?;
                (id, starter.is_some())
            }
        };
        let thread = match discord.start_thread(home, starter_id, &name).await {
            Ok(thread) => thread,
            // Created before a crash: a thread started from a message has the message's id.
            Err(err) if err.code() == Some(THREAD_ALREADY_CREATED) => starter_id.cast(),
            Err(err) => return Err(err),
        };
        crate::failpoint::hit("after_thread_before_record");
        self.with_outbox(|o| {
            o.set_thread(session_id, &thread.to_string())?;
            o.set_named_with_prompt(session_id, session.prompt.is_some())
        })
        .map_err(record)?;
        tracing::info!(session_id, thread_id = %thread, "thread created");
        Ok((thread, posted_card))
    }

    /// Where a session's starter message is: `(home channel, message)`, or,
    /// in a forum, `(post, message)`: a post's first message lives in the
    /// post and has its id.
    pub(super) async fn starter_of(
        &self,
        discord: &Discord,
        session_id: &str,
    ) -> Result<Option<(Id<ChannelMarker>, Id<MessageMarker>)>, SendError> {
        let Some(session) = self.with_outbox(|o| o.session(session_id)).ok().flatten() else { return Ok(None) };
        let channel = session.channel_id.as_deref().and_then(parse_id).or(self.config.home_channel);
        let (Some(channel), Some(starter)) = (channel, session.starter_message_id.as_deref().and_then(parse_id)) else {
            return Ok(None);
        };
        if self.home(discord, channel).await?.forum {
            return Ok(Some((starter.cast(), starter)));
        }
        Ok(Some((channel, starter)))
    }
}
