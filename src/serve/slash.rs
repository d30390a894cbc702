//! The `/omp` slash command: registered per guild when its definition
//! changes, answered within Discord's 3 s, allowed people only.

use std::sync::Arc;

use omp_discord_core::commands::{self, Invocation, SessionLine};
use omp_discord_core::format::project_name;
use omp_discord_core::inbound::prepare_inbound;
use omp_discord_core::protocol::{ServerFrame, SessionAction};
use serde_json::Value;
use twilight_model::application::interaction::{Interaction, InteractionType};
use twilight_model::http::interaction::InteractionResponse;
use twilight_model::id::Id;
use twilight_model::id::marker::{ApplicationMarker, GuildMarker};

use super::inbound::inbound_frame;
use super::interaction::{self, private, public};
use super::{Sidecar, now_ms};
use crate::store::{Inbound, SessionThread};

/// Registers `/omp` in each guild whose registered definition differs from this build's.
pub async fn register(sidecar: Arc<Sidecar>, application: Id<ApplicationMarker>, guilds: Vec<Id<GuildMarker>>) {
    let Some(discord) = &sidecar.discord else { return };
    let hash = commands::definitions_hash();
    for guild in guilds {
        let key = format!("commands:{application}:{guild}");
        if sidecar.with_outbox(|o| o.meta(&key)).ok().flatten().as_deref() == Some(hash.as_str()) {
            tracing::debug!(guild_id = %guild, "the /omp command is up to date");
            continue;
        }
        match discord.set_guild_commands(application, guild, &commands::definitions()).await {
            Ok(()) => {
                tracing::info!(guild_id = %guild, "registered the /omp command");
                let _ = sidecar.with_outbox(|o| o.set_meta(&key, &hash));
            }
            Err(err) => tracing::warn!(guild_id = %guild, error = %err, "could not register the /omp command"),
        }
    }
}

impl Sidecar {
    /// Answers an `/omp` invocation.
    pub(super) async fn on_command(&self, interaction: &Interaction, data: Value) {
        let (Some(discord), Some(user)) = (&self.discord, interaction.author()) else { return };
        let roles = interaction.member.as_ref().map(|m| m.roles.as_slice()).unwrap_or_default();
        if interaction.kind == InteractionType::ApplicationCommandAutocomplete {
            // Project paths are for allowed people only; others see no choices.
            let choices = match commands::focused_option(&data) {
                Some((option, typed)) if option == "project" && self.access.is_allowed(user.id, roles) => {
                    commands::project_choices(&self.project_dirs(), &typed)
                }
                _ => Vec::new(),
            };
            return self.respond(interaction, &interaction::choices(choices), "autocomplete").await;
        }
        let Some(invocation) = commands::parse(&data) else { return };
        let response = if self.access.is_allowed(user.id, roles) {
            let name = user.global_name.clone().unwrap_or_else(|| user.name.clone());
            tracing::info!(audit = true, user_id = %user.id, command = ?invocation, "slash command");
            if let Invocation::Ask { prompt, project: Some(project), session: None } = &invocation {
                return self.ask_in_project(discord, interaction, &name, prompt, project).await;
            }
            self.run_command(invocation, interaction, &name).await
        } else {
            tracing::info!(audit = true, user_id = %user.id, "slash command refused: not on the allowlist");
            private("Only people on this bot's allowlist can use /omp.")
        };
        self.respond(interaction, &response, "slash command").await;
    }

    async fn run_command(&self, invocation: Invocation, interaction: &Interaction, name: &str) -> InteractionResponse {
        match invocation {
            Invocation::Status => {
                let status = self.status().await;
                let head = format!(
                    "omp-discord {} · gateway {} · {} queued · {} delivered · {} failed",
                    status["version"].as_str().unwrap_or_default(),
                    status["gateway"].as_str().unwrap_or_default(),
                    status["queue"]["depth"],
                    status["delivered"],
                    status["failed"],
                );
                private(&commands::sessions_text(&head, &self.session_lines(10)))
            }
            Invocation::Sessions => private(&commands::sessions_text("Recent sessions", &self.session_lines(20))),
            Invocation::Ask { prompt, session, .. } => {
                let session = match self.resolve_session(session.as_deref(), interaction) {
                    Ok(session) => session,
                    Err(why) => return private(&why),
                };
                let text = match prepare_inbound(name, &prompt) {
                    Ok(text) => text,
                    Err(refusal) => return private(&format!("Not sent: {refusal}")),
                };
                let inbound = Inbound {
                    message_id: interaction.id.get(),
                    session_id: session.session_id.clone(),
                    author_id: interaction.author_id().map(|id| id.to_string()).unwrap_or_default(),
                    text,
                    delivery: omp_discord_core::inbound::Delivery::FollowUp,
                };
                if let Err(err) = self.with_outbox(|o| o.record_inbound(&inbound, now_ms())) {
                    return private(&format!("Not sent: the prompt could not be journaled ({err})."));
                }
                let tx = self.inbound.attached.lock().expect("attached lock").get(&session.session_id).cloned();
                let project = project_name(session.cwd.as_deref().unwrap_or_default());
                let note = match tx {
                    Some(tx) => {
                        let _ = tx.send(inbound_frame(inbound)).await;
                        String::new()
                    }
                    None => format!(
                        "\n*The session is not running now; it gets this when it comes back (`omp --continue` in {project}).*"
                    ),
                };
                public(&format!("📨 **{name}** asked {project}: {prompt}{note}"))
            }
            Invocation::Abort { session } => {
                let session = match self.resolve_session(session.as_deref(), interaction) {
                    Ok(session) => session,
                    Err(why) => return private(&why),
                };
                let tx = self.inbound.attached.lock().expect("attached lock").get(&session.session_id).cloned();
                let Some(tx) = tx else {
                    return private("That session is not running, so there is nothing to stop.");
                };
                let control =
                    ServerFrame::Control { session_id: session.session_id.clone(), action: SessionAction::Abort };
                if tx.send(control).await.is_err() {
                    return private("That session just went away; there is nothing to stop.");
                }
                public(&format!("⏹️ **{name}** stopped the current run."))
            }
        }
    }

    fn session_lines(&self, limit: usize) -> Vec<SessionLine> {
        let sessions = self.with_outbox(|o| o.recent_sessions(limit)).unwrap_or_default();
        let attached = self.inbound.attached.lock().expect("attached lock");
        sessions
            .into_iter()
            .map(|s| SessionLine {
                live: attached.contains_key(&s.session_id),
                project: project_name(s.cwd.as_deref().unwrap_or_default()),
                host: s.host,
                thread_id: s.thread_id,
                id: s.session_id,
            })
            .collect()
    }

    /// The session named (by id or its start), else the one whose thread the command was used in.
    fn resolve_session(&self, named: Option<&str>, interaction: &Interaction) -> Result<SessionThread, String> {
        let record = |id: &str| self.with_outbox(|o| o.session(id)).ok().flatten();
        if let Some(named) = named.map(str::trim).filter(|n| !n.is_empty()) {
            let sessions = self.with_outbox(|o| o.recent_sessions(200)).unwrap_or_default();
            let mut found = sessions.into_iter().filter(|s| s.session_id.starts_with(named));
            return match (found.next(), found.next()) {
                (Some(session), None) => Ok(session),
                (Some(_), Some(_)) => Err(format!("More than one session starts with `{named}`; give more of its id.")),
                (None, _) => Err(format!("No session starts with `{named}` (see /omp sessions).")),
            };
        }
        let channel = interaction.channel.as_ref().map(|c| c.id.to_string()).unwrap_or_default();
        match self.with_outbox(|o| o.session_by_thread(&channel)).ok().flatten().and_then(|id| record(&id)) {
            Some(session) => Ok(session),
            None => Err("Use this in a session's thread, or name the session (see /omp sessions).".into()),
        }
    }
}
