//! Integration tests: the real sidecar binary, the emulator on loopback, real
//! SQLite, and the real `omp` with a scripted model. One test binary, with a
//! module per area (as ripgrep does), sharing the harness in `util`.

mod approvals;
mod ask_project;
mod cli;
mod controls;
mod crash;
mod demo;
mod disk;
mod docs;
mod exactly_once;
mod extension;
mod faults;
mod forum;
mod hostile;
mod inbound;
mod mcp;
mod omp;
mod ops;
mod outbox;
mod package;
mod respawn;
mod secrets;
mod setup;
mod shim;
mod sidecar;
mod slash;
mod soak;
mod steering;
mod tools;
mod util;
mod webhook;
