//! Discord's JSON error codes that callers branch on, as Discord's
//! reference names them (<https://discord.com/developers/docs/topics/opcodes-and-status-codes#json>).
//! A refused request carries its code in [`super::SendError::Rejected`].

/// "Unknown Channel": the channel or thread was deleted, or never existed.
pub const UNKNOWN_CHANNEL: u64 = 10_003;
/// "Unknown Message": the message was deleted.
pub const UNKNOWN_MESSAGE: u64 = 10_008;
/// "Missing Access": the bot cannot see the channel.
pub const MISSING_ACCESS: u64 = 50_001;
/// "Missing Permissions": the bot lacks a permission the request needs.
pub const MISSING_PERMISSIONS: u64 = 50_013;
/// "A tag is required to create a forum post in this channel".
pub const TAG_REQUIRED: u64 = 40_067;
/// "A thread has already been created for this message".
pub const THREAD_ALREADY_CREATED: u64 = 160_004;
/// "Cannot send messages in a non-text channel" (a forum, a category).
pub const NOT_A_TEXT_CHANNEL: u64 = 50_008;
