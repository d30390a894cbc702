//! Discord's gateway close codes: which ones end the connection for good,
//! and what a person must do about each.

/// What a close code means for the bot, when it ends the gateway for good
/// (Discord's codes that forbid reconnecting). `None` for a code after which
/// the connection resumes by itself.
#[must_use]
pub fn fatal_close_advice(code: u16) -> Option<&'static str> {
    Some(match code {
        4004 => {
            "Discord refused the bot token (close 4004): it was reset or is wrong. Put the new token where the \
             sidecar reads it (`omp-discord setup`, or OMP_DISCORD_TOKEN / token_file), then restart it \
             (`omp-discord stop`)."
        }
        4010 | 4011 => {
            "Discord asked for sharding (close 4010/4011): the bot is in too many servers for one connection, \
             which omp-discord does not support."
        }
        4012 => "Discord refused the gateway version (close 4012): update omp-discord.",
        4013 => "Discord refused the intents (close 4013): update omp-discord.",
        4014 => {
            "Discord refused a privileged intent (close 4014): enable Message Content in the Developer Portal \
             (your application → Bot → Privileged Gateway Intents), then restart the sidecar \
             (`omp-discord stop`). Replies from Discord stop until then."
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_codes_say_what_to_do_and_resumable_ones_are_not_fatal() {
        for code in [4004, 4010, 4011, 4012, 4013, 4014] {
            let advice = fatal_close_advice(code).unwrap();
            assert!(advice.contains(&format!("{code}")) || advice.contains("4010/4011"), "{code}: {advice}");
        }
        assert!(fatal_close_advice(4014).unwrap().contains("Message Content"));
        for code in [1000, 1001, 4000, 4001, 4002, 4003, 4005, 4007, 4008, 4009] {
            assert_eq!(fatal_close_advice(code), None, "{code}");
        }
    }
}
