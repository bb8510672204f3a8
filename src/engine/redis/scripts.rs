//! The Lua scripts, each run atomically by Redis. Their sources are the
//! `.lua` files beside this one, whose headers say what each takes and
//! answers; the key names they use come from [`keys`](super::keys).
//!
//! One static per script, built on first use: `invoke_async` sends EVALSHA
//! and loads the script itself when Redis does not know it (first use, or
//! after a restart). [`all`] lets `connect` load them up front, so a Redis
//! that refuses scripts fails start-up rather than the first write.

use std::sync::LazyLock;

use redis::Script;

use super::keys;

/// Applies a commit: see `commit.lua`.
pub(super) static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        keys::lua_prelude(),
        include_str!("commit.lua")
    ))
});

/// Appends to a conversation log and announces it, metered or not: see
/// `append.lua`.
pub(super) static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}{}",
        keys::lua_log_prelude(),
        include_str!("gcra.lua"),
        include_str!("append.lua")
    ))
});

/// Counts within a window: see `count.lua`.
pub(super) static COUNT: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("count.lua")));

/// Takes from a token bucket: see `throttle.lua` (and `gcra.lua`, its
/// step, shared with `append.lua`).
pub(super) static THROTTLE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        include_str!("gcra.lua"),
        include_str!("throttle.lua")
    ))
});

/// Takes from several token buckets, all or none: see `throttle_all.lua`.
pub(super) static THROTTLE_ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{}{}",
        include_str!("gcra.lua"),
        include_str!("throttle_all.lua")
    ))
});

/// Takes or renews a lease: see `lease.lua`.
pub(super) static LEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lease.lua")));

/// Gives up a lease its holder holds: see `release.lua`.
pub(super) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("release.lua")));

/// Adds an id to a capped list: see `remember.lua`.
pub(super) static REMEMBER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("remember.lua")));

/// Every script, for loading at connect.
pub(super) fn all() -> [&'static Script; 8] {
    [
        &COMMIT,
        &APPEND,
        &COUNT,
        &THROTTLE,
        &THROTTLE_ALL,
        &LEASE,
        &RELEASE,
        &REMEMBER,
    ]
}
