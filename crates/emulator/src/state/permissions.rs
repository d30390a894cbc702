//! What a user may do in a guild or a channel: roles, channel overwrites, visibility.

use super::World;
use crate::config::permissions;
use crate::error::ApiError;
use crate::model::Channel;

impl World {
    /// The permissions `user_id` has in `guild_id` from its roles, before channel overwrites
    /// (0 when not a member).
    pub(crate) fn guild_permissions(&self, user_id: u64, guild_id: u64) -> u64 {
        let Some(guild) = self.guilds.get(&guild_id) else { return 0 };
        if guild.owner_id == user_id {
            return u64::MAX;
        }
        let Some(member) = guild.members.get(&user_id) else { return 0 };
        let base = guild
            .roles
            .iter()
            .filter(|r| r.id == guild_id || member.roles.contains(&r.id))
            .fold(0, |bits, r| bits | r.permissions);
        if base & permissions::ADMINISTRATOR != 0 { u64::MAX } else { base }
    }

    /// The permissions `user_id` has in `channel_id` (threads use their parent's).
    pub(crate) fn permissions(&self, user_id: u64, channel_id: u64) -> u64 {
        let Some(channel) = self.channels.get(&channel_id) else {
            return 0;
        };
        let Some(guild_id) = channel.guild_id else {
            // DMs: the recipients may talk.
            return if channel.recipients.contains(&user_id) { permissions::MEMBER_DEFAULT } else { 0 };
        };
        if channel.is_thread() {
            return channel.parent_id.map_or(0, |parent| self.permissions(user_id, parent));
        }
        let Some(guild) = self.guilds.get(&guild_id) else {
            return 0;
        };
        if guild.owner_id == user_id {
            return u64::MAX;
        }
        let Some(member) = guild.members.get(&user_id) else {
            return 0;
        };
        let mut base = 0;
        for role in &guild.roles {
            if role.id == guild_id || member.roles.contains(&role.id) {
                base |= role.permissions;
            }
        }
        if base & permissions::ADMINISTRATOR != 0 {
            return u64::MAX;
        }
        let mut perms = base;
        let overwrite = |id: u64, kind: u8| channel.overwrites.iter().find(|o| o.id == id && o.kind == kind);
        if let Some(o) = overwrite(guild_id, 0) {
            perms = (perms & !o.deny) | o.allow;
        }
        let (mut allow, mut deny) = (0, 0);
        for role in &member.roles {
            if let Some(o) = overwrite(*role, 0) {
                allow |= o.allow;
                deny |= o.deny;
            }
        }
        perms = (perms & !deny) | allow;
        if let Some(o) = overwrite(user_id, 1) {
            perms = (perms & !o.deny) | o.allow;
        }
        if perms & permissions::VIEW_CHANNEL == 0 {
            return 0;
        }
        perms
    }

    /// The channel if the bot may see it: 10003 if unknown, 50001 if hidden.
    pub(crate) fn visible_channel(&self, channel_id: u64) -> Result<&Channel, ApiError> {
        let channel = self.channels.get(&channel_id).ok_or_else(ApiError::unknown_channel)?;
        if self.permissions(self.bot_id, channel_id) & permissions::VIEW_CHANNEL == 0 {
            return Err(ApiError::missing_access());
        }
        Ok(channel)
    }

    pub(crate) fn require(&self, user_id: u64, channel_id: u64, bits: u64) -> Result<(), ApiError> {
        if self.permissions(user_id, channel_id) & bits == bits { Ok(()) } else { Err(ApiError::missing_permissions()) }
    }
}

#[cfg(test)]
mod tests {
    use crate::state::EmulatorState;

    #[test]
    fn permissions_follow_overwrites() {
        use crate::config::*;
        let state = EmulatorState::new(EmulatorConfig::default());
        let world = state.world();
        let bot = DEFAULT_BOT_USER_ID;
        assert_ne!(world.permissions(bot, DEFAULT_HOME_CHANNEL_ID) & permissions::SEND_MESSAGES, 0);
        assert_eq!(world.permissions(bot, DEFAULT_HIDDEN_CHANNEL_ID), 0);
        let read_only = world.permissions(bot, DEFAULT_READ_ONLY_CHANNEL_ID);
        assert_ne!(read_only & permissions::VIEW_CHANNEL, 0);
        assert_eq!(read_only & permissions::SEND_MESSAGES, 0);
        // The owner bypasses overwrites.
        assert_eq!(world.permissions(DEFAULT_OWNER_USER_ID, DEFAULT_HIDDEN_CHANNEL_ID), u64::MAX);
    }
}
