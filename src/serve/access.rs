//! Who may drive sessions from Discord: allowed users and roles, plus the
//! application's owner once known.

use std::collections::HashSet;
use std::sync::{Arc, Mutex as SyncMutex};

use omp_discord_core::approval::ApprovalPolicy;
use twilight_model::id::Id;
use twilight_model::id::marker::{RoleMarker, UserMarker};

use super::Sidecar;

/// Who may drive sessions from Discord (reply, approve, start work).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Allowed user ids.
    pub users: HashSet<Id<UserMarker>>,
    /// Allowed role ids.
    pub roles: HashSet<Id<RoleMarker>>,
    /// Which tool calls wait for an allowed person's Approve.
    pub approvals: ApprovalPolicy,
}

/// The allowlist as the running sidecar keeps it.
#[derive(Debug)]
pub(super) struct Allowlist {
    /// The configured users, plus the application's owner once known.
    users: SyncMutex<HashSet<Id<UserMarker>>>,
    /// Roles whose members may drive a session.
    roles: HashSet<Id<RoleMarker>>,
}

impl Allowlist {
    pub(super) fn new(users: HashSet<Id<UserMarker>>, roles: HashSet<Id<RoleMarker>>) -> Self {
        Self { users: SyncMutex::new(users), roles }
    }

    /// Adds a user (the application's owner, who may always drive sessions).
    pub(super) fn allow(&self, user: Id<UserMarker>) {
        self.users.lock().expect("allowlist lock").insert(user);
    }

    /// Whether `user`, with `roles` in the guild, may drive sessions.
    pub(super) fn is_allowed(&self, user: Id<UserMarker>, roles: &[Id<RoleMarker>]) -> bool {
        self.users.lock().expect("allowlist lock").contains(&user) || roles.iter().any(|role| self.roles.contains(role))
    }
}

/// Adds the application's owner to the allowlist: with no configuration,
/// only the person who owns the bot can drive sessions.
pub async fn learn_owner(sidecar: Arc<Sidecar>) {
    let Some(discord) = sidecar.discord.as_ref() else { return };
    match discord.application_owner().await {
        Ok(Some(owner)) => {
            tracing::info!(user_id = %owner, "the application's owner may drive sessions");
            sidecar.access.allow(owner);
        }
        Ok(None) => {}
        Err(err) => tracing::warn!(error = %err, "could not look up the application's owner"),
    }
}
