//! Placeholder: replaced by the emulator work.
