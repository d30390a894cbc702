//! The emulator's integration tests: oneshot requests against `app()`, and real clients
//! (twilight-http, twilight-gateway, a raw WebSocket) against a served emulator.

mod control;
mod gateway;
mod interactions;
mod resources;
mod rest;
mod setup;
mod spec;
mod support;
mod twilight;
