//! The bot's invite: which permissions the enabled features need, each with
//! what it is for, and the OAuth2 URL that asks for exactly those.
//!
//! `omp-discord setup` prints this list next to the URL, so a person can see
//! why each permission is asked for; `doctor` and the channel overwrites that
//! setup writes use the same bits.

/// A permission bit with Discord's name for it and a one-line reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permission {
    /// The bit (Discord's value).
    pub bit: u64,
    /// The name Discord shows in the invite and the channel settings.
    pub name: &'static str,
    /// Why omp-discord asks for it.
    pub why: &'static str,
}

/// Discord's permission bits that omp-discord may ask for.
pub mod bits {
    /// Manage Channels.
    pub const MANAGE_CHANNELS: u64 = 1 << 4;
    /// Add Reactions.
    pub const ADD_REACTIONS: u64 = 1 << 6;
    /// View Channel.
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    /// Send Messages.
    pub const SEND_MESSAGES: u64 = 1 << 11;
    /// Embed Links.
    pub const EMBED_LINKS: u64 = 1 << 14;
    /// Attach Files.
    pub const ATTACH_FILES: u64 = 1 << 15;
    /// Read Message History.
    pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
    /// Manage Threads.
    pub const MANAGE_THREADS: u64 = 1 << 34;
    /// Create Public Threads.
    pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
    /// Send Messages in Threads.
    pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;
}

/// What the person wants omp-discord to do; each feature needs its permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features {
    /// A thread per session (else everything goes to the home channel).
    pub threads: bool,
    /// Replies in a thread drive the session (the bot confirms with a reaction).
    pub replies: bool,
    /// Approve / Deny buttons and `/omp` slash commands.
    pub commands: bool,
    /// Setup creates the home channel itself.
    pub create_channel: bool,
}

impl Features {
    /// Everything omp-discord offers, with the home channel made by setup.
    pub const ALL: Self = Self { threads: true, replies: true, commands: true, create_channel: true };
}

const NOTIFY: &[Permission] = &[
    Permission { bit: bits::VIEW_CHANNEL, name: "View Channel", why: "see the home channel" },
    Permission { bit: bits::SEND_MESSAGES, name: "Send Messages", why: "post session cards, run summaries and errors" },
    Permission { bit: bits::EMBED_LINKS, name: "Embed Links", why: "show runs and tool calls as embeds" },
    Permission {
        bit: bits::ATTACH_FILES,
        name: "Attach Files",
        why: "attach long tool output and the files the model sends",
    },
    Permission {
        bit: bits::READ_MESSAGE_HISTORY,
        name: "Read Message History",
        why: "find its own earlier messages after a restart",
    },
];

const THREADS: &[Permission] = &[
    Permission { bit: bits::CREATE_PUBLIC_THREADS, name: "Create Public Threads", why: "open a thread per session" },
    Permission {
        bit: bits::SEND_MESSAGES_IN_THREADS,
        name: "Send Messages in Threads",
        why: "post a session's reports in its thread",
    },
    Permission {
        bit: bits::MANAGE_THREADS,
        name: "Manage Threads",
        why: "rename a session's thread after its first prompt and unarchive it when the session resumes",
    },
];

const REPLIES: &[Permission] =
    &[Permission { bit: bits::ADD_REACTIONS, name: "Add Reactions", why: "confirm with ✅ that OMP has a reply" }];

// Creating a channel with overwrites needs no Manage Roles: Discord lets a bot
// allow or deny in them whatever it holds itself.
const CREATE_CHANNEL: &[Permission] = &[Permission {
    bit: bits::MANAGE_CHANNELS,
    name: "Manage Channels",
    why: "create the home channel during setup (you may remove it afterwards)",
}];

/// The permissions `features` need, in a stable order without duplicates.
pub fn permissions(features: Features) -> Vec<Permission> {
    let mut all: Vec<Permission> = NOTIFY.to_vec();
    if features.threads {
        all.extend_from_slice(THREADS);
    }
    if features.replies {
        all.extend_from_slice(REPLIES);
    }
    if features.create_channel {
        all.extend_from_slice(CREATE_CHANNEL);
    }
    let mut seen = 0u64;
    all.retain(|p| {
        let new = seen & p.bit == 0;
        seen |= p.bit;
        new
    });
    all
}

/// The permission bits `features` need, as one integer (the invite's `permissions`).
pub fn permission_bits(features: Features) -> u64 {
    permissions(features).iter().fold(0, |bits, p| bits | p.bit)
}

/// The bits the bot needs in the home channel once set up (no setup-only ones):
/// what setup writes into the channel's overwrite for the bot.
pub fn channel_bits(features: Features) -> u64 {
    permission_bits(Features { create_channel: false, ..features })
}

/// Of `needed`, the ones `allowed` lacks.
pub fn missing(needed: &[Permission], allowed: u64) -> Vec<Permission> {
    needed.iter().filter(|p| allowed & p.bit == 0).copied().collect()
}

/// The OAuth2 URL that adds the bot `application_id` to a server with exactly
/// the permissions `features` need (and slash commands when asked for).
pub fn invite_url(application_id: u64, features: Features) -> String {
    let scope = if features.commands { "bot+applications.commands" } else { "bot" };
    format!(
        "https://discord.com/oauth2/authorize?client_id={application_id}&scope={scope}&permissions={}",
        permission_bits(features)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_alone_need_the_five_basic_permissions() {
        let names: Vec<&str> = permissions(Features::default()).iter().map(|p| p.name).collect();
        assert_eq!(names, ["View Channel", "Send Messages", "Embed Links", "Attach Files", "Read Message History"]);
        assert_eq!(permission_bits(Features::default()), (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16));
    }

    #[test]
    fn each_feature_adds_its_permissions_and_nothing_else() {
        let base = permission_bits(Features::default());
        let threads = permission_bits(Features { threads: true, ..Features::default() });
        assert_eq!(
            threads & !base,
            bits::CREATE_PUBLIC_THREADS | bits::SEND_MESSAGES_IN_THREADS | bits::MANAGE_THREADS
        );
        let replies = permission_bits(Features { replies: true, ..Features::default() });
        assert_eq!(replies & !base, bits::ADD_REACTIONS);
        // Slash commands come from the scope, not from a permission.
        assert_eq!(permission_bits(Features { commands: true, ..Features::default() }), base);
        let create = permission_bits(Features { create_channel: true, ..Features::default() });
        assert_eq!(create & !base, bits::MANAGE_CHANNELS);
        // Never Administrator, never more than asked for.
        assert_eq!(permission_bits(Features::ALL) & (1 << 3), 0);
        assert_eq!(channel_bits(Features::ALL) & bits::MANAGE_CHANNELS, 0);
    }

    #[test]
    fn every_permission_says_what_it_is_for() {
        let all = permissions(Features::ALL);
        assert!(all.iter().all(|p| !p.why.is_empty() && p.bit.is_power_of_two()));
        let unique: std::collections::BTreeSet<u64> = all.iter().map(|p| p.bit).collect();
        assert_eq!(unique.len(), all.len());
    }

    #[test]
    fn the_invite_url_carries_the_client_id_scope_and_bits() {
        let url = invite_url(42, Features::ALL);
        assert_eq!(
            url,
            format!(
                "https://discord.com/oauth2/authorize?client_id=42&scope=bot+applications.commands&permissions={}",
                permission_bits(Features::ALL)
            )
        );
        assert!(invite_url(42, Features::default()).contains("&scope=bot&permissions=117760"));
    }

    #[test]
    fn missing_lists_what_is_not_allowed() {
        let needed = permissions(Features::default());
        let names: Vec<&str> =
            missing(&needed, bits::VIEW_CHANNEL | bits::EMBED_LINKS).iter().map(|p| p.name).collect();
        assert_eq!(names, ["Send Messages", "Attach Files", "Read Message History"]);
        assert!(missing(&needed, u64::MAX).is_empty());
    }
}
