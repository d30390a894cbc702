//! Where the sidecar's socket lives. Shared by the shim (through wasm) and the
//! sidecar, so both always look in the same place. Callers pass the
//! environment in; nothing here reads it.

/// Name of the directory (under the runtime or state directory) that holds the socket.
pub const SOCKET_DIR_NAME: &str = "omp-discord";
/// File name of the socket.
pub const SOCKET_FILE_NAME: &str = "sidecar.sock";

/// The environment values that decide the socket path.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketEnv<'a> {
    /// `OMP_DISCORD_SOCKET`: an explicit path, used as is.
    pub explicit: Option<&'a str>,
    /// `XDG_RUNTIME_DIR`: per-user tmpfs, the preferred home of sockets.
    pub runtime_dir: Option<&'a str>,
    /// `XDG_STATE_HOME`: the fallback base when there is no runtime dir.
    pub state_home: Option<&'a str>,
    /// `HOME`: the last resort, as `~/.local/state`.
    pub home: Option<&'a str>,
}

/// The socket path: `OMP_DISCORD_SOCKET`, else
/// `$XDG_RUNTIME_DIR/omp-discord/sidecar.sock`, else
/// `$XDG_STATE_HOME/omp-discord/sidecar.sock`, else
/// `$HOME/.local/state/omp-discord/sidecar.sock`. `None` when none is set.
#[must_use]
pub fn socket_path(env: SocketEnv<'_>) -> Option<String> {
    let non_empty = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_owned);
    if let Some(explicit) = non_empty(env.explicit) {
        return Some(explicit);
    }
    let base = non_empty(env.runtime_dir)
        .or_else(|| non_empty(env.state_home))
        .or_else(|| non_empty(env.home).map(|home| format!("{}/.local/state", home.trim_end_matches('/'))))?;
    Some(format!("{}/{SOCKET_DIR_NAME}/{SOCKET_FILE_NAME}", base.trim_end_matches('/')))
}

/// The sidecar's durable state directory by default: `OMP_DISCORD_STATE_DIR`
/// (`explicit`), else `$XDG_STATE_HOME/omp-discord`, else
/// `$HOME/.local/state/omp-discord`. `None` when none is set.
#[must_use]
pub fn state_dir(explicit: Option<&str>, state_home: Option<&str>, home: Option<&str>) -> Option<String> {
    let non_empty = |v: Option<&str>| v.filter(|v| !v.is_empty()).map(str::to_owned);
    if let Some(explicit) = non_empty(explicit) {
        return Some(explicit);
    }
    let base = non_empty(state_home)
        .or_else(|| non_empty(home).map(|home| format!("{}/.local/state", home.trim_end_matches('/'))))?;
    Some(format!("{}/{SOCKET_DIR_NAME}", base.trim_end_matches('/')))
}

/// Name of the directory (in the state directory) where a shim that could not
/// reach the sidecar leaves its reports; the sidecar journals them on start.
pub const SPOOL_DIR_NAME: &str = "spool";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_follows_the_same_order() {
        assert_eq!(state_dir(Some("/x"), Some("/s"), Some("/h")).as_deref(), Some("/x"));
        assert_eq!(state_dir(None, Some("/s/"), Some("/h")).as_deref(), Some("/s/omp-discord"));
        assert_eq!(state_dir(Some(""), None, Some("/h")).as_deref(), Some("/h/.local/state/omp-discord"));
        assert_eq!(state_dir(None, None, None), None);
    }

    #[test]
    fn explicit_path_wins() {
        let env = SocketEnv { explicit: Some("/tmp/x.sock"), runtime_dir: Some("/run/user/1"), ..Default::default() };
        assert_eq!(socket_path(env).as_deref(), Some("/tmp/x.sock"));
    }

    #[test]
    fn runtime_dir_then_state_home_then_home() {
        let mut env = SocketEnv {
            runtime_dir: Some("/run/user/1000/"),
            state_home: Some("/s"),
            home: Some("/h"),
            ..Default::default()
        };
        assert_eq!(socket_path(env).as_deref(), Some("/run/user/1000/omp-discord/sidecar.sock"));
        env.runtime_dir = Some("");
        assert_eq!(socket_path(env).as_deref(), Some("/s/omp-discord/sidecar.sock"));
        env.state_home = None;
        assert_eq!(socket_path(env).as_deref(), Some("/h/.local/state/omp-discord/sidecar.sock"));
        env.home = None;
        assert_eq!(socket_path(env), None);
    }
}
