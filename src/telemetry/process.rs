//! The standard process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, ...), read from
//! `/proc` on each scrape. On a system without `/proc` they are absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug)]
pub(super) struct ProcessCollector;

/// What one read of `/proc` found; a field is `None` when it could not be
/// read.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<i64>,
    virtual_bytes: Option<i64>,
    start_time_seconds: Option<f64>,
    open_fds: Option<i64>,
    max_fds: Option<i64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sample = read();
        if let Some(v) = sample.cpu_seconds {
            let metric = ConstCounter::new(v);
            metric.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds.",
                None,
                metric.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                sample.resident_bytes.map(|v| v as f64),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                sample.virtual_bytes.map(|v| v as f64),
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds.",
                sample.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                sample.open_fds.map(|v| v as f64),
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                sample.max_fds.map(|v| v as f64),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let metric = ConstGauge::new(v);
                metric.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    metric.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}

fn read() -> Sample {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as i64;
    let mut sample = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .zip(std::fs::read_to_string("/proc/stat").ok())
        .map(|(stat, system)| parse_stat(&stat, &system, ticks, page))
        .unwrap_or_default();
    sample.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|dir| i64::try_from(dir.count()).unwrap_or(i64::MAX));
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    sample.max_fds = limit.current.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
    sample
}

/// Reads `/proc/self/stat` (see proc(5)) and the boot time from
/// `/proc/stat`. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_stat(stat: &str, system: &str, ticks: f64, page: i64) -> Sample {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return Sample::default();
    };
    // `rest` starts at field 3 (the state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let boot = system
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    Sample {
        cpu_seconds: field(14)
            .zip(field(15))
            .map(|(user, system)| user.saturating_add(system) as f64 / ticks),
        virtual_bytes: field(23).map(|v| i64::try_from(v).unwrap_or(i64::MAX)),
        resident_bytes: field(24)
            .map(|pages| i64::try_from(pages).unwrap_or(0).saturating_mul(page)),
        start_time_seconds: field(22)
            .zip(boot)
            .map(|(start, boot)| boot as f64 + start as f64 / ticks),
        open_fds: None,
        max_fds: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let stat = "4242 (sw (x) board) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0 1000 123456789 300 18446744073709551615";
        let sample = parse_stat(stat, "cpu 1 2 3\nbtime 1700000000\n", 100.0, 4096);
        assert_eq!(sample.cpu_seconds, Some(3.0));
        assert_eq!(sample.resident_bytes, Some(300 * 4096));
        assert_eq!(sample.virtual_bytes, Some(123_456_789));
        assert_eq!(sample.start_time_seconds, Some(1_700_000_010.0));
    }

    #[test]
    fn this_process_is_measured() {
        if std::path::Path::new("/proc/self/stat").exists() {
            let sample = read();
            assert!(sample.resident_bytes.is_some_and(|v| v > 0));
            assert!(sample.open_fds.is_some_and(|v| v > 0));
            assert!(sample.start_time_seconds.is_some_and(|v| v > 1e9));
        }
    }
}
