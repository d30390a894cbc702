//! `/omp ask project:<dir>`: the prompt goes to an idle live session of that
//! configured project; when there is none, a headless `omp -p <prompt>`
//! starts in the project's directory (an argument vector, never a shell),
//! reports to this sidecar like any session, and the command's deferred
//! answer links the thread it opens.

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex as SyncMutex;
use std::time::Duration;

use omp_discord_core::commands::resolve_project;
use omp_discord_core::inbound::{Delivery, prepare_inbound};
use omp_discord_core::redact::redact_text;
use tokio::sync::oneshot;
use twilight_model::application::interaction::Interaction;
use twilight_model::http::interaction::InteractionResponse;

use super::inbound::inbound_frame;
use super::interaction::{deferred, private, public, text_data};
use super::{Sidecar, now_ms};
use crate::discord::Discord;
use crate::store::Inbound;

/// How long a started omp has to connect and open its thread.
const START_DEADLINE: Duration = Duration::from_secs(120);
/// How long after omp exited its thread may still be opened (its reports are journaled).
const AFTER_EXIT: Duration = Duration::from_secs(30);

/// omp processes `/omp ask` started that have not attached a session yet, by pid.
#[derive(Debug, Default)]
pub struct Launches {
    by_pid: SyncMutex<HashMap<u32, oneshot::Sender<String>>>,
}

impl Launches {
    /// A connection from process `pid` attached `session_id`: if `/omp ask`
    /// started that process, this is its session.
    pub fn attached(&self, pid: u32, session_id: &str) {
        if let Some(waiter) = self.by_pid.lock().expect("launches lock").remove(&pid) {
            let _ = waiter.send(session_id.to_owned());
        }
    }
}

impl Sidecar {
    /// The configured project directories (globs expanded to existing directories).
    pub(super) fn project_dirs(&self) -> Vec<String> {
        self.config.projects.iter().flat_map(crate::config::project_dirs).map(|dir| dir.display().to_string()).collect()
    }

    /// Answers `/omp ask prompt: project:` (allowed people only; checked by the caller).
    pub(super) async fn ask_in_project(
        &self,
        discord: &Discord,
        interaction: &Interaction,
        name: &str,
        prompt: &str,
        project: &str,
    ) {
        let respond = |response: InteractionResponse| async move {
            self.respond(interaction, &response, "/omp ask").await;
        };
        let dirs = self.project_dirs();
        let Some(dir) = resolve_project(&dirs, project).map(str::to_owned) else {
            tracing::info!(audit = true, project, "/omp ask refused: not a configured project");
            return respond(private(&format!(
                "`{project}` is not one of this bot's projects; pick one from the list (projects are the \
                 `[[projects]]` of omp-discord's config)."
            )))
            .await;
        };
        let label = Path::new(&dir).file_name().and_then(|n| n.to_str()).unwrap_or(&dir).to_owned();
        let text = match prepare_inbound(name, prompt) {
            Ok(text) => text,
            Err(refusal) => return respond(private(&format!("Not sent: {refusal}"))).await,
        };
        if let Some((session_id, thread)) = self.idle_session_in(&dir) {
            let inbound = Inbound {
                message_id: interaction.id.get(),
                session_id: session_id.clone(),
                author_id: interaction.author_id().map(|id| id.to_string()).unwrap_or_default(),
                text,
                delivery: Delivery::FollowUp,
            };
            let tx = self.inbound.attached.lock().expect("attached lock").get(&session_id).cloned();
            self.prompt_from_interaction(interaction.id.get());
            let journaled = self.with_outbox(|o| o.record_inbound(&inbound, now_ms()));
            if let (Ok(_), Some(tx)) = (journaled, tx)
                && tx.send(inbound_frame(inbound)).await.is_ok()
            {
                tracing::info!(audit = true, session_id, project = %dir, "/omp ask routed to an idle session");
                let link = thread.map(|t| format!(" → <#{t}>")).unwrap_or_default();
                return respond(public(&format!("📨 **{name}** asked {label}: {prompt}{link}"))).await;
            }
        }
        // Starting omp takes seconds: acknowledge now, link the thread once it exists.
        respond(deferred()).await;
        let answer = self.launch(&dir, &label, name, prompt).await;
        let edit = serde_json::to_value(text_data(&answer)).expect("interaction responses serialize");
        if let Err(err) = discord.edit_original_response(interaction.application_id, &interaction.token, &edit).await {
            tracing::warn!(error = %err, "could not follow up on /omp ask");
        }
    }

    /// An attached session working in `dir` (or below it) that is not running
    /// a run, with its thread: the most recently seen first.
    fn idle_session_in(&self, dir: &str) -> Option<(String, Option<String>)> {
        let sessions = self.with_outbox(|o| o.recent_sessions(200)).unwrap_or_default();
        let attached = self.inbound.attached.lock().expect("attached lock");
        sessions
            .into_iter()
            .filter(|s| attached.contains_key(&s.session_id) && !self.typing.is_running(&s.session_id))
            .find(|s| s.cwd.as_deref().is_some_and(|cwd| Path::new(cwd).starts_with(dir)))
            .map(|s| (s.session_id, s.thread_id))
    }

    /// Starts `ask_command -p <prompt>` in `dir` and waits until its session's
    /// thread exists. Returns the follow-up's text.
    async fn launch(&self, dir: &str, label: &str, name: &str, prompt: &str) -> String {
        let Some((program, args)) = self.config.ask_command.split_first() else {
            return "No command is configured to start omp (`ask_command`).".to_owned();
        };
        // A prompt that starts with `-` would be read as an option of omp.
        let argument = if prompt.trim_start().starts_with('-') { format!("Task: {prompt}") } else { prompt.to_owned() };
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .arg("-p")
            .arg(argument)
            .current_dir(dir)
            // The started omp's extension reports to this sidecar.
            .env("OMP_DISCORD_SOCKET", &self.config.socket)
            // The agent's tools can read their environment: the bot's secrets stay here.
            .env_remove(crate::config::env::TOKEN)
            .env_remove(crate::config::env::WEBHOOK_URL)
            .env_remove("CREDENTIALS_DIRECTORY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Ok(me) = std::env::current_exe() {
            command.env("OMP_DISCORD_BIN", me);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(err) => {
                tracing::warn!(program, error = %err, "/omp ask could not start omp");
                return format!(
                    "Could not start `{program}` in {label}: {err}. Check `ask_command` in omp-discord's config \
                     (and that omp is on the sidecar's PATH)."
                );
            }
        };
        let pid = child.id().unwrap_or_default();
        let (attached, mut session_rx) = oneshot::channel();
        self.launches.by_pid.lock().expect("launches lock").insert(pid, attached);
        tracing::info!(audit = true, pid, project = %dir, "/omp ask started omp");
        let (exit_tx, mut exit_rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = exit_tx.send(child.wait_with_output().await);
        });

        let started = tokio::time::Instant::now();
        let mut session: Option<String> = None;
        let mut exit: Option<(tokio::time::Instant, Option<std::process::Output>)> = None;
        let answer = loop {
            if session.is_none()
                && let Ok(id) = session_rx.try_recv()
            {
                session = Some(id);
            }
            if let Some(id) = &session
                && let Some(thread) = self.with_outbox(|o| o.session(id)).ok().flatten().and_then(|s| s.thread_id)
            {
                break format!("🚀 **{name}** started omp in {label}: {prompt} → <#{thread}>");
            }
            if exit.is_none()
                && let Ok(output) = exit_rx.try_recv()
            {
                exit = Some((tokio::time::Instant::now(), output.ok()));
            }
            if let Some((at, output)) = &exit
                && (session.is_none() || at.elapsed() > AFTER_EXIT)
            {
                let status = output.as_ref().map(|o| o.status.to_string()).unwrap_or_else(|| "unknown".into());
                let tail = output.as_ref().map(|o| stderr_tail(&o.stderr)).unwrap_or_default();
                tracing::warn!(pid, %status, "the omp /omp ask started ended without a thread");
                break if session.is_none() {
                    format!(
                        "omp in {label} exited ({status}) without reporting to this bot (is the omp-discord \
                         plugin installed there?){tail}"
                    )
                } else {
                    format!(
                        "omp in {label} ran ({status}), but its thread could not be opened; see `omp-discord status`."
                    )
                };
            }
            if started.elapsed() > START_DEADLINE {
                break format!(
                    "omp in {label} is still starting; its thread will appear in the home channel once it reports."
                );
            }
            if self.shutdown.is_cancelled() {
                break "omp-discord is stopping; omp keeps running and reports after a restart.".to_owned();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        self.launches.by_pid.lock().expect("launches lock").remove(&pid);
        answer
    }
}

/// The end of a failed omp's error output, redacted, as a quote.
fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return String::new();
    }
    let chars = text.chars().count();
    let tail: String = text.chars().skip(chars.saturating_sub(600)).collect();
    format!("\n```\n{}\n```", redact_text(&tail).replace("```", "'''"))
}
