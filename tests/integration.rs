//! Integration tests: the real sidecar binary, the emulator on loopback, real
//! SQLite, and the real `omp` with a scripted model. One test binary, with a
//! module per area (as ripgrep does), sharing the harness in `util`.

mod approvals;
mod ask_project;
mod cli;
mod docs;
mod faults;
mod hostile;
mod inbound;
mod mcp;
mod omp;
mod ops;
mod outbox;
mod package;
mod setup;
mod shim;
mod sidecar;
mod slash;
mod steering;
mod tools;
mod util;
mod webhook;
