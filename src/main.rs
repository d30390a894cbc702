//! `omp-discord`: the sidecar, CLI and Discord emulator.

fn main() {}
