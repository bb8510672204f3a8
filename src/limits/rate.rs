//! A rate as operators write it (`2/s`, `30/min burst 10`) and as the
//! engine's token bucket takes it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::engine::Bucket;

/// The largest count or burst a rate may name: beyond it a limit is no
/// limit, and the arithmetic stays far from overflow.
pub const MAX_COUNT: u32 = 1_000_000;

/// `count` events per `unit` on average, with up to `burst` at once.
///
/// A token bucket: it holds `burst` tokens, refills one every
/// `unit / count`, and each event takes one. A client that keeps to
/// `count` per `unit` is never refused, however its events fall within a
/// unit (a fixed window would refuse some of them at its edges); one that
/// sends faster gets `burst` through and then one per `unit / count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub unit: Unit,
    pub burst: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Second,
    Minute,
    Hour,
}

impl Unit {
    fn duration(self) -> Duration {
        match self {
            Unit::Second => Duration::from_secs(1),
            Unit::Minute => Duration::from_secs(60),
            Unit::Hour => Duration::from_secs(3600),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Unit::Second => "s",
            Unit::Minute => "min",
            Unit::Hour => "h",
        }
    }
}

impl Rate {
    /// `count` per `unit`, with a burst of `burst`.
    pub const fn new(count: u32, unit: Unit, burst: u32) -> Self {
        Self { count, unit, burst }
    }

    /// Events per second on average, for comparing rates of different
    /// units.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.unit.duration().as_secs_f64()
    }

    /// Whether this rate lets nothing through that `other` would refuse:
    /// no faster on average, and no larger burst.
    pub fn within(&self, other: &Rate) -> bool {
        self.per_second() <= other.per_second() && self.burst <= other.burst
    }

    /// The bucket the engine keeps for this rate.
    pub fn bucket(&self) -> Bucket {
        let unit = u64::try_from(self.unit.duration().as_micros()).unwrap_or(u64::MAX);
        Bucket {
            interval_micros: (unit / u64::from(self.count.max(1))).max(1),
            burst: self.burst.max(1),
        }
    }

    /// How long a refused client is told to wait at most: one token's
    /// refill, rounded up to whole seconds (`Retry-After` takes seconds).
    pub fn retry_after_seconds(&self) -> u64 {
        self.bucket().interval_micros.div_ceil(1_000_000).max(1)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} burst {}",
            self.count,
            self.unit.as_str(),
            self.burst
        )
    }
}

/// Why a rate's text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "must be a rate such as \"2/s\", \"30/min\" or \"100/h burst 20\" (counts 1 to {MAX_COUNT})"
)]
pub struct RateError;

impl FromStr for Rate {
    type Err = RateError;

    /// `<count>/<s|min|h>` and an optional `burst <n>`; without one the
    /// burst is the count, so `30/min` lets 30 through at once, as a
    /// one-minute window would.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut words = text.split_whitespace();
        let (count, unit) = words
            .next()
            .and_then(|r| r.split_once('/'))
            .ok_or(RateError)?;
        let count = parse_count(count)?;
        let unit = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "second" => Unit::Second,
            "m" | "min" | "minute" => Unit::Minute,
            "h" | "hour" => Unit::Hour,
            _ => return Err(RateError),
        };
        let burst = match (words.next(), words.next(), words.next()) {
            (None, _, _) => count,
            (Some(word), Some(n), None) if word.eq_ignore_ascii_case("burst") => parse_count(n)?,
            _ => return Err(RateError),
        };
        Ok(Rate::new(count, unit, burst))
    }
}

fn parse_count(text: &str) -> Result<u32, RateError> {
    match text.trim().parse::<u32>() {
        Ok(n) if (1..=MAX_COUNT).contains(&n) => Ok(n),
        _ => Err(RateError),
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_and_print_alike() {
        for (text, rate) in [
            ("2/s", Rate::new(2, Unit::Second, 2)),
            ("30/min", Rate::new(30, Unit::Minute, 30)),
            ("2/s burst 5", Rate::new(2, Unit::Second, 5)),
            ("100/h BURST 1", Rate::new(100, Unit::Hour, 1)),
        ] {
            assert_eq!(text.parse::<Rate>(), Ok(rate), "{text}");
            assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
        }
        for bad in [
            "",
            "2",
            "0/s",
            "2/day",
            "2/s burst",
            "2/s burst 0",
            "2/s 5",
            "-1/s",
            "2/s burst 5 x",
            "1000001/s",
        ] {
            assert_eq!(bad.parse::<Rate>(), Err(RateError), "{bad:?}");
        }
    }

    #[test]
    fn a_bucket_refills_one_event_per_share_of_the_unit() {
        let bucket = Rate::new(2, Unit::Second, 5).bucket();
        assert_eq!(bucket.interval_micros, 500_000);
        assert_eq!(bucket.burst, 5);
        assert_eq!(Rate::new(30, Unit::Minute, 30).retry_after_seconds(), 2);
        assert_eq!(Rate::new(200, Unit::Second, 1).retry_after_seconds(), 1);
    }

    #[test]
    fn within_compares_average_and_burst() {
        let base: Rate = "2/s burst 5".parse().unwrap();
        assert!("100/min burst 5".parse::<Rate>().unwrap().within(&base));
        assert!(!"3/s burst 5".parse::<Rate>().unwrap().within(&base));
        assert!(!"1/s burst 6".parse::<Rate>().unwrap().within(&base));
    }
}
