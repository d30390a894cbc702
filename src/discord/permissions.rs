//! A member's permissions in a channel, computed from Discord's JSON as
//! Discord computes them (for `setup` and `doctor`, which check before the
//! sidecar needs them).

use serde_json::Value;

/// The Administrator permission: every permission, whatever the overwrites.
const ADMINISTRATOR: u64 = 1 << 3;

/// A snowflake or permission bit set as Discord writes it (a string; a number is accepted too), or 0.
pub fn bits(value: &Value) -> u64 {
    value.as_str().and_then(|s| s.parse().ok()).or_else(|| value.as_u64()).unwrap_or(0)
}

/// Discord's permission computation for one member in one channel: base
/// permissions from @everyone and the member's roles, then the channel's
/// overwrites for @everyone, the member's roles, and the member.
pub fn channel_permissions(guild: u64, user: u64, member: &Value, roles: &Value, overwrites: &Value) -> u64 {
    let member_roles: Vec<u64> =
        member["roles"].as_array().into_iter().flatten().filter_map(|r| r.as_str()?.parse().ok()).collect();
    let role_bits = |id: u64| {
        roles.as_array().into_iter().flatten().find(|r| bits(&r["id"]) == id).map_or(0, |r| bits(&r["permissions"]))
    };
    let mut allowed = role_bits(guild) | member_roles.iter().map(|r| role_bits(*r)).fold(0, |a, b| a | b);
    if allowed & ADMINISTRATOR != 0 {
        return u64::MAX;
    }
    let overwrites = overwrites.as_array().map(Vec::as_slice).unwrap_or_default();
    let overwrite =
        |id: u64| overwrites.iter().find(|o| bits(&o["id"]) == id).map(|o| (bits(&o["allow"]), bits(&o["deny"])));
    if let Some((allow, deny)) = overwrite(guild) {
        allowed = (allowed & !deny) | allow;
    }
    let (mut allow, mut deny) = (0, 0);
    for role in &member_roles {
        if let Some((a, d)) = overwrite(*role) {
            allow |= a;
            deny |= d;
        }
    }
    allowed = (allowed & !deny) | allow;
    if let Some((allow, deny)) = overwrite(user) {
        allowed = (allowed & !deny) | allow;
    }
    allowed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn permissions_follow_roles_and_overwrites() {
        let (guild, bot, role) = (1, 100, 200);
        let roles = json!([
            {"id": "1", "permissions": ((1u64 << 10) | (1 << 11) | (1 << 14) | (1 << 16)).to_string()},
            {"id": "200", "permissions": ((1u64 << 35) | (1 << 38)).to_string()},
        ]);
        let member = json!({"roles": [role.to_string()]});
        let all = channel_permissions(guild, bot, &member, &roles, &json!([]));
        let granted = (1u64 << 10) | (1 << 11) | (1 << 14) | (1 << 16) | (1 << 35) | (1 << 38);
        assert_eq!(all & granted, granted);
        // @everyone denied Send Messages; the role allows it back; the member overwrite denies it again.
        let overwrites = json!([
            {"id": "1", "type": 0, "allow": "0", "deny": (1u64 << 11).to_string()},
        ]);
        assert_eq!(channel_permissions(guild, bot, &member, &roles, &overwrites) & (1 << 11), 0);
        let overwrites = json!([
            {"id": "1", "type": 0, "allow": "0", "deny": (1u64 << 11).to_string()},
            {"id": "200", "type": 0, "allow": (1u64 << 11).to_string(), "deny": "0"},
        ]);
        assert_ne!(channel_permissions(guild, bot, &member, &roles, &overwrites) & (1 << 11), 0);
        let overwrites = json!([
            {"id": "200", "type": 0, "allow": (1u64 << 11).to_string(), "deny": "0"},
            {"id": "100", "type": 1, "allow": "0", "deny": (1u64 << 10).to_string()},
        ]);
        assert_eq!(channel_permissions(guild, bot, &member, &roles, &overwrites) & (1 << 10), 0);
        let admin = json!([{"id": "1", "permissions": "8"}]);
        assert_eq!(channel_permissions(guild, bot, &json!({"roles": []}), &admin, &overwrites), u64::MAX);
    }
}
