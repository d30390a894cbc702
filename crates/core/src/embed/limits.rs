//! Discord's limits. Every length is in Unicode scalar values (`char`s), the
//! unit Discord counts in.

/// Characters in a message's `content`.
pub const CONTENT: usize = 2000;
/// Embeds in one message.
pub const EMBEDS: usize = 10;
/// Characters in an embed title.
pub const TITLE: usize = 256;
/// Characters in an embed description.
pub const DESCRIPTION: usize = 4096;
/// Fields in one embed.
pub const FIELDS: usize = 25;
/// Characters in a field name.
pub const FIELD_NAME: usize = 256;
/// Characters in a field value.
pub const FIELD_VALUE: usize = 1024;
/// Characters in an embed footer.
pub const FOOTER: usize = 2048;
/// Characters in an embed author name.
pub const AUTHOR: usize = 256;
/// Characters of embed text summed over all embeds of one message.
pub const EMBED_TOTAL: usize = 6000;
/// Characters in a thread name.
pub const THREAD_NAME: usize = 100;
/// Files attached to one message.
pub const FILES: usize = 10;
/// Bytes of all files of one message together. Discord takes far more
/// (10 MB); omp-discord keeps a message within one socket frame and one
/// journal row, which is plenty for a log or a diff.
pub const FILES_BYTES: usize = 96 * 1024;
/// Characters in a file name.
pub const FILENAME: usize = 100;
