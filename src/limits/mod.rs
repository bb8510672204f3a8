//! Limits: every rate, size and cap that keeps one client, agent or tenant
//! from taking what belongs to all, as settings with safe defaults.
//!
//! - [`Limits`]: the node's settings, read at start from the `[limits]`
//!   table of the config file and `SWITCHBOARD_LIMIT_*` variables; one
//!   struct, held by the [`Limiter`] behind a swappable pointer so a reload
//!   can replace it while requests run;
//! - [`OrgLimits`]: what an organization overrides of the rates that are
//!   its own (its visitors' and agents'), kept on its record and set
//!   through the admin API; [`OrgRates`] is the result;
//! - [`rate`]: rates as token buckets (`2/s burst 5`);
//! - [`address`]: the client address per-address limits key on, through
//!   trusted proxies;
//! - [`limiter`]: the buckets themselves, in the engine, so every node
//!   counts against the same budget.
//!
//! docs/security.md ("Limits") says what each limit protects.

pub mod address;
mod limiter;
pub mod rate;
mod sizes;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use self::address::{ForwardedHeader, TrustedProxies};
pub use self::limiter::{Key, Limiter, Refused, address_key};
pub use self::rate::{Rate, RateError, Unit};
pub use self::sizes::{HistoryLimits, MessageLimits};
use crate::config::ConfigError;

pub const ENV_TRUSTED_PROXIES: &str = "SWITCHBOARD_TRUSTED_PROXIES";
pub const ENV_FORWARDED_HEADER: &str = "SWITCHBOARD_FORWARDED_HEADER";
pub const ENV_GUEST_MESSAGES: &str = "SWITCHBOARD_LIMIT_GUEST_MESSAGES";
pub const ENV_AGENT_MESSAGES: &str = "SWITCHBOARD_LIMIT_AGENT_MESSAGES";
pub const ENV_ORG_AGENT_MESSAGES: &str = "SWITCHBOARD_LIMIT_ORG_AGENT_MESSAGES";
pub const ENV_SESSIONS_PER_ADDRESS: &str = "SWITCHBOARD_LIMIT_SESSIONS_PER_ADDRESS";
pub const ENV_SESSIONS_PER_DEPLOYMENT: &str = "SWITCHBOARD_LIMIT_SESSIONS_PER_DEPLOYMENT";
pub const ENV_CONVERSATIONS_PER_ADDRESS: &str = "SWITCHBOARD_LIMIT_CONVERSATIONS_PER_ADDRESS";
pub const ENV_CONVERSATIONS_PER_DEPLOYMENT: &str = "SWITCHBOARD_LIMIT_CONVERSATIONS_PER_DEPLOYMENT";
pub const ENV_QUEUED_PER_ADDRESS: &str = "SWITCHBOARD_LIMIT_QUEUED_PER_ADDRESS";
pub const ENV_TOKEN_REQUESTS: &str = "SWITCHBOARD_LIMIT_TOKEN_REQUESTS";
pub const ENV_PUSH_REQUESTS: &str = "SWITCHBOARD_LIMIT_PUSH_REQUESTS";
pub const ENV_STAFF_LOGINS: &str = "SWITCHBOARD_LIMIT_STAFF_LOGINS";
pub const ENV_MAX_FRAME_BYTES: &str = "SWITCHBOARD_LIMIT_MAX_FRAME_BYTES";
pub const ENV_AGENT_HISTORY_PAGE: &str = "SWITCHBOARD_LIMIT_AGENT_HISTORY_PAGE";
pub const ENV_AGENT_CAPACITY: &str = "SWITCHBOARD_LIMIT_AGENT_CAPACITY";
pub const ENV_MAX_BODY_BYTES: &str = "SWITCHBOARD_LIMIT_MAX_BODY_BYTES";
pub const ENV_TEXT_CHARS: &str = "SWITCHBOARD_LIMIT_TEXT_CHARS";
pub const ENV_CUSTOM_DATA_BYTES: &str = "SWITCHBOARD_LIMIT_CUSTOM_DATA_BYTES";
pub const ENV_QUICK_REPLIES: &str = "SWITCHBOARD_LIMIT_QUICK_REPLIES";
pub const ENV_CARD_ACTIONS: &str = "SWITCHBOARD_LIMIT_CARD_ACTIONS";
pub const ENV_CAROUSEL_CARDS: &str = "SWITCHBOARD_LIMIT_CAROUSEL_CARDS";
pub const ENV_HISTORY_PAGE: &str = "SWITCHBOARD_LIMIT_HISTORY_PAGE";
pub const ENV_HISTORY_CONVERSATIONS: &str = "SWITCHBOARD_LIMIT_HISTORY_CONVERSATIONS";
pub const ENV_HISTORY_DEPTH: &str = "SWITCHBOARD_LIMIT_HISTORY_DEPTH";

/// What a guest request frame holds besides its text and custom
/// attributes (action, token, ids, the JSON around them), kept free in a
/// frame when checking that the largest message fits.
pub const FRAME_OVERHEAD_BYTES: usize = 4 * 1024;

/// The most conversations from one address that may wait in a queue at
/// once, as far as any setting may raise it.
pub const MAX_QUEUED_PER_ADDRESS: u32 = 10_000;

/// The node's limits. Every field is a setting (README, "Configuration");
/// the defaults are what switchboard always allowed, or, for what it never
/// limited, generous enough for honest traffic behind a shared address.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// The rates an organization may override; these are the defaults of
    /// every organization that does not.
    pub org: OrgRates,
    /// Guest token endpoints (exchange, refresh, login start and complete,
    /// revoke), per client address, deployment and endpoint group.
    pub token_requests: Rate,
    /// Push-device registration, per client address and deployment.
    pub push_requests: Rate,
    /// `GET /auth/login` (the console's staff sign-in), per client address.
    pub staff_logins: Rate,
    /// The largest WebSocket frame or message a client may send; larger
    /// ones close the socket with 1009.
    pub max_frame_bytes: usize,
    /// The most events an agent's `history` request answers at once.
    pub agent_history_page: usize,
    /// The highest `agentCapacity` a queue may be given.
    pub agent_capacity: u32,
    /// The largest HTTP request body (413 past it). Read when the node
    /// starts.
    pub max_body_bytes: usize,
    /// What one message may carry.
    pub message: MessageLimits,
    /// What one guest history request may read.
    pub history: HistoryLimits,
    /// Whose forwarding header names the client.
    pub trusted_proxies: TrustedProxies,
}

/// The rates that are an organization's own, resolved: the node's
/// defaults with the organization's overrides applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OrgRates {
    /// Messages and events of one guest session, across its sockets.
    pub guest_messages: Rate,
    /// Messages of one agent, across its sockets.
    pub agent_messages: Rate,
    /// Messages of all the organization's agents together.
    pub org_agent_messages: Rate,
    /// New guest sessions from one client address, per deployment.
    pub sessions_per_address: Rate,
    /// New guest sessions of one deployment, from anywhere.
    pub sessions_per_deployment: Rate,
    /// New conversations from one client address, per deployment.
    pub conversations_per_address: Rate,
    /// New conversations of one deployment, from anywhere.
    pub conversations_per_deployment: Rate,
    /// Conversations from one client address (per deployment) waiting for
    /// an agent at once.
    pub queued_per_address: u32,
}

impl Default for OrgRates {
    fn default() -> Self {
        Self {
            guest_messages: Rate::new(2, Unit::Second, 3),
            agent_messages: Rate::new(5, Unit::Second, 20),
            org_agent_messages: Rate::new(200, Unit::Second, 1000),
            sessions_per_address: Rate::new(60, Unit::Minute, 60),
            sessions_per_deployment: Rate::new(100, Unit::Second, 1000),
            conversations_per_address: Rate::new(30, Unit::Minute, 30),
            conversations_per_deployment: Rate::new(50, Unit::Second, 500),
            queued_per_address: 20,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            org: OrgRates::default(),
            token_requests: Rate::new(30, Unit::Minute, 30),
            push_requests: Rate::new(60, Unit::Minute, 60),
            staff_logins: Rate::new(30, Unit::Minute, 30),
            max_frame_bytes: 64 * 1024,
            agent_history_page: 500,
            agent_capacity: 50,
            max_body_bytes: 64 * 1024,
            message: MessageLimits::default(),
            history: HistoryLimits::default(),
            trusted_proxies: TrustedProxies::default(),
        }
    }
}

/// An organization's overrides of [`OrgRates`]; absent fields keep the
/// node's defaults. Rates are written as in the configuration (`"2/s burst
/// 5"`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrgLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2/s burst 5")]
    pub guest_messages: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub agent_messages: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub org_agent_messages: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub sessions_per_address: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub sessions_per_deployment: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub conversations_per_address: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub conversations_per_deployment: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_per_address: Option<u32>,
}

impl OrgLimits {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// `base` with these overrides applied.
    pub fn apply(&self, base: &OrgRates) -> OrgRates {
        OrgRates {
            guest_messages: self.guest_messages.unwrap_or(base.guest_messages),
            agent_messages: self.agent_messages.unwrap_or(base.agent_messages),
            org_agent_messages: self.org_agent_messages.unwrap_or(base.org_agent_messages),
            sessions_per_address: self
                .sessions_per_address
                .unwrap_or(base.sessions_per_address),
            sessions_per_deployment: self
                .sessions_per_deployment
                .unwrap_or(base.sessions_per_deployment),
            conversations_per_address: self
                .conversations_per_address
                .unwrap_or(base.conversations_per_address),
            conversations_per_deployment: self
                .conversations_per_deployment
                .unwrap_or(base.conversations_per_deployment),
            queued_per_address: self.queued_per_address.unwrap_or(base.queued_per_address),
        }
    }

    /// Checks overrides against the node's defaults. An organization's
    /// admin may only tighten them (a tenant cannot buy itself more of a
    /// shared node); the operator may set any valid value. Answers the
    /// first field in the way, with why.
    pub fn check(&self, base: &OrgRates, operator: bool) -> Result<(), (&'static str, String)> {
        if let Some(n) = self.queued_per_address {
            if !(1..=MAX_QUEUED_PER_ADDRESS).contains(&n) {
                return Err((
                    "queuedPerAddress",
                    format!("must be 1 to {MAX_QUEUED_PER_ADDRESS}"),
                ));
            }
            if !operator && n > base.queued_per_address {
                return Err((
                    "queuedPerAddress",
                    format!(
                        "may be at most the node's {} (only the operator raises it)",
                        base.queued_per_address
                    ),
                ));
            }
        }
        if operator {
            return Ok(());
        }
        let rates = [
            ("guestMessages", self.guest_messages, base.guest_messages),
            ("agentMessages", self.agent_messages, base.agent_messages),
            (
                "orgAgentMessages",
                self.org_agent_messages,
                base.org_agent_messages,
            ),
            (
                "sessionsPerAddress",
                self.sessions_per_address,
                base.sessions_per_address,
            ),
            (
                "sessionsPerDeployment",
                self.sessions_per_deployment,
                base.sessions_per_deployment,
            ),
            (
                "conversationsPerAddress",
                self.conversations_per_address,
                base.conversations_per_address,
            ),
            (
                "conversationsPerDeployment",
                self.conversations_per_deployment,
                base.conversations_per_deployment,
            ),
        ];
        for (field, rate, base) in rates {
            if let Some(rate) = rate
                && !rate.within(&base)
            {
                return Err((
                    field,
                    format!("may be at most the node's {base} (only the operator raises it)"),
                ));
            }
        }
        Ok(())
    }
}

/// The `[limits]` table of the config file: the same names as the
/// variables, lower case, without `SWITCHBOARD_LIMIT_` (and
/// `trusted_proxies`, `forwarded_header`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    guest_messages: Option<String>,
    agent_messages: Option<String>,
    org_agent_messages: Option<String>,
    sessions_per_address: Option<String>,
    sessions_per_deployment: Option<String>,
    conversations_per_address: Option<String>,
    conversations_per_deployment: Option<String>,
    queued_per_address: Option<u64>,
    token_requests: Option<String>,
    push_requests: Option<String>,
    staff_logins: Option<String>,
    max_frame_bytes: Option<u64>,
    agent_history_page: Option<u64>,
    agent_capacity: Option<u64>,
    max_body_bytes: Option<u64>,
    text_chars: Option<u64>,
    custom_data_bytes: Option<u64>,
    quick_replies: Option<u64>,
    card_actions: Option<u64>,
    carousel_cards: Option<u64>,
    history_page: Option<u64>,
    history_conversations: Option<u64>,
    history_depth: Option<u64>,
    trusted_proxies: Option<Vec<String>>,
    forwarded_header: Option<String>,
}

impl Limits {
    /// Reads the limits from the file's table and the environment (which
    /// wins); an unset one keeps its default. Errors name the variable.
    pub fn load(
        file: LimitsFile,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let defaults = Limits::default();
        let rate = |name: &'static str,
                    file: Option<String>,
                    default: Rate|
         -> Result<Rate, ConfigError> {
            match env(name).or(file) {
                None => Ok(default),
                Some(text) => text
                    .parse::<Rate>()
                    .map_err(|e| invalid(name, e.to_string())),
            }
        };
        let number = |name: &'static str,
                      file: Option<u64>,
                      default: u64,
                      min: u64,
                      max: u64|
         -> Result<u64, ConfigError> {
            let value = match env(name) {
                Some(text) => text
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| invalid(name, format!("must be a whole number {min} to {max}")))?,
                None => file.unwrap_or(default),
            };
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(invalid(name, format!("must be {min} to {max}")))
            }
        };
        let base = defaults.org;
        let org = OrgRates {
            guest_messages: rate(ENV_GUEST_MESSAGES, file.guest_messages, base.guest_messages)?,
            agent_messages: rate(ENV_AGENT_MESSAGES, file.agent_messages, base.agent_messages)?,
            org_agent_messages: rate(
                ENV_ORG_AGENT_MESSAGES,
                file.org_agent_messages,
                base.org_agent_messages,
            )?,
            sessions_per_address: rate(
                ENV_SESSIONS_PER_ADDRESS,
                file.sessions_per_address,
                base.sessions_per_address,
            )?,
            sessions_per_deployment: rate(
                ENV_SESSIONS_PER_DEPLOYMENT,
                file.sessions_per_deployment,
                base.sessions_per_deployment,
            )?,
            conversations_per_address: rate(
                ENV_CONVERSATIONS_PER_ADDRESS,
                file.conversations_per_address,
                base.conversations_per_address,
            )?,
            conversations_per_deployment: rate(
                ENV_CONVERSATIONS_PER_DEPLOYMENT,
                file.conversations_per_deployment,
                base.conversations_per_deployment,
            )?,
            queued_per_address: to_u32(number(
                ENV_QUEUED_PER_ADDRESS,
                file.queued_per_address,
                u64::from(base.queued_per_address),
                1,
                u64::from(MAX_QUEUED_PER_ADDRESS),
            )?),
        };
        let header = match env(ENV_FORWARDED_HEADER).or(file.forwarded_header) {
            None => ForwardedHeader::default(),
            Some(text) => text.parse().map_err(|()| {
                invalid(ENV_FORWARDED_HEADER, "must be x-forwarded-for or forwarded")
            })?,
        };
        let proxies = env(ENV_TRUSTED_PROXIES)
            .or(file.trusted_proxies.map(|list| list.join(",")))
            .unwrap_or_default();
        let trusted_proxies = TrustedProxies::parse(&proxies, header)
            .map_err(|message| invalid(ENV_TRUSTED_PROXIES, message))?;
        let message = MessageLimits {
            text_chars: to_usize(number(
                ENV_TEXT_CHARS,
                file.text_chars,
                to_u64(defaults.message.text_chars),
                1,
                1_000_000,
            )?),
            custom_data_bytes: to_usize(number(
                ENV_CUSTOM_DATA_BYTES,
                file.custom_data_bytes,
                to_u64(defaults.message.custom_data_bytes),
                1,
                1024 * 1024,
            )?),
            quick_replies: to_usize(number(
                ENV_QUICK_REPLIES,
                file.quick_replies,
                to_u64(defaults.message.quick_replies),
                1,
                100,
            )?),
            card_actions: to_usize(number(
                ENV_CARD_ACTIONS,
                file.card_actions,
                to_u64(defaults.message.card_actions),
                1,
                100,
            )?),
            carousel_cards: to_usize(number(
                ENV_CAROUSEL_CARDS,
                file.carousel_cards,
                to_u64(defaults.message.carousel_cards),
                1,
                100,
            )?),
        };
        let history = HistoryLimits {
            page_size: number(
                ENV_HISTORY_PAGE,
                file.history_page,
                defaults.history.page_size,
                1,
                10_000,
            )?,
            conversations: to_usize(number(
                ENV_HISTORY_CONVERSATIONS,
                file.history_conversations,
                to_u64(defaults.history.conversations),
                1,
                10_000,
            )?),
            depth: number(
                ENV_HISTORY_DEPTH,
                file.history_depth,
                defaults.history.depth,
                1,
                1_000_000,
            )?,
        };
        let max_frame_bytes = to_usize(number(
            ENV_MAX_FRAME_BYTES,
            file.max_frame_bytes,
            to_u64(defaults.max_frame_bytes),
            4 * 1024,
            16 * 1024 * 1024,
        )?);
        // A message at the largest sizes must fit in one frame, or the
        // sizes promise what the socket closes with 1009.
        let fits = message
            .text_chars
            .saturating_add(message.custom_data_bytes)
            .saturating_add(FRAME_OVERHEAD_BYTES);
        if fits > max_frame_bytes {
            return Err(invalid(
                ENV_TEXT_CHARS,
                format!(
                    "{} characters of text and {} bytes of custom attributes do not fit in a frame of {ENV_MAX_FRAME_BYTES} ({max_frame_bytes} bytes, {FRAME_OVERHEAD_BYTES} of them kept for the request around them); raise that or lower these",
                    message.text_chars, message.custom_data_bytes
                ),
            ));
        }
        Ok(Limits {
            org,
            token_requests: rate(
                ENV_TOKEN_REQUESTS,
                file.token_requests,
                defaults.token_requests,
            )?,
            push_requests: rate(
                ENV_PUSH_REQUESTS,
                file.push_requests,
                defaults.push_requests,
            )?,
            staff_logins: rate(ENV_STAFF_LOGINS, file.staff_logins, defaults.staff_logins)?,
            max_frame_bytes,
            agent_history_page: to_usize(number(
                ENV_AGENT_HISTORY_PAGE,
                file.agent_history_page,
                to_u64(defaults.agent_history_page),
                1,
                10_000,
            )?),
            agent_capacity: to_u32(number(
                ENV_AGENT_CAPACITY,
                file.agent_capacity,
                u64::from(defaults.agent_capacity),
                1,
                1_000,
            )?),
            max_body_bytes: to_usize(number(
                ENV_MAX_BODY_BYTES,
                file.max_body_bytes,
                to_u64(defaults.max_body_bytes),
                4 * 1024,
                16 * 1024 * 1024,
            )?),
            message,
            history,
            trusted_proxies,
        })
    }
}

fn invalid(name: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name,
        message: message.into(),
    }
}

// The ranges checked above keep every value within the narrower type.
fn to_u32(n: u64) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Limits, ConfigError> {
        let map: HashMap<&str, &str> = vars.iter().copied().collect();
        Limits::load(LimitsFile::default(), |name| {
            map.get(name).map(|v| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_are_the_documented_values() {
        let limits = load(&[]).unwrap();
        assert_eq!(limits, Limits::default());
        assert_eq!(limits.org.guest_messages.to_string(), "2/s burst 3");
        assert_eq!(limits.token_requests.to_string(), "30/min burst 30");
        assert_eq!(limits.max_frame_bytes, 65_536);
        assert!(limits.trusted_proxies.is_empty());
    }

    #[test]
    fn variables_set_limits_and_errors_name_them() {
        let limits = load(&[
            (ENV_GUEST_MESSAGES, "10/s burst 1"),
            (ENV_QUEUED_PER_ADDRESS, "3"),
            (ENV_TRUSTED_PROXIES, "10.0.0.0/8,::1"),
            (ENV_FORWARDED_HEADER, "Forwarded"),
        ])
        .unwrap();
        assert_eq!(limits.org.guest_messages, Rate::new(10, Unit::Second, 1));
        assert_eq!(limits.org.queued_per_address, 3);
        assert!(limits.trusted_proxies.trusts("10.2.3.4".parse().unwrap()));
        assert_eq!(limits.trusted_proxies.header(), ForwardedHeader::Forwarded);
        for (name, value) in [
            (ENV_GUEST_MESSAGES, "fast"),
            (ENV_QUEUED_PER_ADDRESS, "0"),
            (ENV_MAX_FRAME_BYTES, "10"),
            (ENV_AGENT_CAPACITY, "many"),
            (ENV_TRUSTED_PROXIES, "10.0.0.0/40"),
            (ENV_FORWARDED_HEADER, "x-real-ip"),
        ] {
            let err = load(&[(name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn sizes_are_settings_and_a_message_must_fit_a_frame() {
        let defaults = load(&[]).unwrap();
        assert_eq!(defaults.message.text_chars, 4000);
        assert_eq!(defaults.message.custom_data_bytes, 2048);
        assert_eq!(defaults.message.quick_replies, 11);
        assert_eq!(defaults.history.page_size, 100);
        assert_eq!(defaults.history.conversations, 50);
        assert_eq!(defaults.history.depth, 10_000);
        assert_eq!(defaults.max_body_bytes, 65_536);
        let limits = load(&[
            (ENV_TEXT_CHARS, "12000"),
            (ENV_CUSTOM_DATA_BYTES, "4096"),
            (ENV_CAROUSEL_CARDS, "4"),
            (ENV_HISTORY_PAGE, "20"),
        ])
        .unwrap();
        assert_eq!(limits.message.text_chars, 12_000);
        assert_eq!(limits.message.custom_data_bytes, 4096);
        assert_eq!(limits.message.carousel_cards, 4);
        assert_eq!(limits.history.page_size, 20);
        // Text that cannot fit in a frame is refused, naming both settings.
        let err = load(&[(ENV_TEXT_CHARS, "70000")]).unwrap_err().to_string();
        assert!(err.starts_with(ENV_TEXT_CHARS), "{err}");
        assert!(err.contains(ENV_MAX_FRAME_BYTES), "{err}");
        let raised = load(&[(ENV_TEXT_CHARS, "70000"), (ENV_MAX_FRAME_BYTES, "131072")]).unwrap();
        assert_eq!(raised.message.text_chars, 70_000);
        for (name, value) in [
            (ENV_TEXT_CHARS, "0"),
            (ENV_CUSTOM_DATA_BYTES, "lots"),
            (ENV_QUICK_REPLIES, "101"),
            (ENV_CARD_ACTIONS, "0"),
            (ENV_HISTORY_PAGE, "0"),
            (ENV_HISTORY_CONVERSATIONS, "-1"),
            (ENV_HISTORY_DEPTH, "0"),
            (ENV_MAX_BODY_BYTES, "100"),
        ] {
            let err = load(&[(name, value)]).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn the_file_table_is_read_and_unknown_keys_refused() {
        let file: LimitsFile = toml::from_str(
            "guest_messages = \"1/s\"\nagent_capacity = 9\ntext_chars = 500\nhistory_depth = 200\ntrusted_proxies = [\"192.168.0.0/16\"]\n",
        )
        .unwrap();
        let limits = Limits::load(file, |_| None).unwrap();
        assert_eq!(limits.org.guest_messages, Rate::new(1, Unit::Second, 1));
        assert_eq!(limits.agent_capacity, 9);
        assert_eq!(limits.message.text_chars, 500);
        assert_eq!(limits.history.depth, 200);
        assert!(
            limits
                .trusted_proxies
                .trusts("192.168.4.4".parse().unwrap())
        );
        assert!(toml::from_str::<LimitsFile>("guest_mesages = \"1/s\"").is_err());
    }

    #[test]
    fn admins_only_tighten_the_operator_sets_anything_valid() {
        let base = OrgRates::default();
        let tighter = OrgLimits {
            guest_messages: Some(Rate::new(1, Unit::Second, 2)),
            queued_per_address: Some(2),
            ..OrgLimits::default()
        };
        assert_eq!(tighter.check(&base, false), Ok(()));
        assert_eq!(
            tighter.apply(&base).guest_messages,
            Rate::new(1, Unit::Second, 2)
        );
        assert_eq!(tighter.apply(&base).agent_messages, base.agent_messages);
        let looser = OrgLimits {
            agent_messages: Some(Rate::new(50, Unit::Second, 20)),
            ..OrgLimits::default()
        };
        assert_eq!(looser.check(&base, false).unwrap_err().0, "agentMessages");
        assert_eq!(looser.check(&base, true), Ok(()));
        let zero = OrgLimits {
            queued_per_address: Some(0),
            ..OrgLimits::default()
        };
        assert_eq!(zero.check(&base, true).unwrap_err().0, "queuedPerAddress");
    }
}
