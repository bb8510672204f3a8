//! Settings of what a node tells its operator: where metrics are served,
//! where a generated bootstrap token goes, and where traces are sent.

use std::path::PathBuf;

use url::Url;

use super::{ConfigError, validate_listen_of};

pub const ENV_METRICS_LISTEN: &str = "SWITCHBOARD_METRICS_LISTEN";
pub const ENV_BOOTSTRAP_TOKEN_OUTPUT: &str = "SWITCHBOARD_BOOTSTRAP_TOKEN_OUTPUT";
pub const ENV_OTLP_ENDPOINT: &str = "SWITCHBOARD_OTLP_ENDPOINT";
pub(super) const ENV_OTLP_PROTOCOL: &str = "SWITCHBOARD_OTLP_PROTOCOL";
pub(super) const ENV_TRACE_SAMPLE_RATIO: &str = "SWITCHBOARD_TRACE_SAMPLE_RATIO";

/// Where OTLP/HTTP collectors take traces, under their base URL.
const TRACES_PATH: &str = "v1/traces";

#[derive(Debug, Clone, Default)]
pub struct TelemetryConfig {
    /// `host:port` of a listener that serves `/metrics` alone; `/metrics`
    /// then answers 404 on the main listener, so the public address does
    /// not expose it. Absent: metrics are on the main listener.
    pub metrics_listen: Option<String>,
    /// A file the bootstrap token generated on a first start is written to
    /// (owner-only), instead of stderr.
    pub bootstrap_token_output: Option<PathBuf>,
    /// Traces, exported over OTLP/HTTP; absent (the default): no spans
    /// leave the node.
    pub traces: Option<TraceConfig>,
}

/// Where and how spans are exported.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceConfig {
    /// The collector's traces URL: the configured base URL with
    /// `/v1/traces` appended, unless it already ends so (the same rule as
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub endpoint: Url,
    pub protocol: OtlpProtocol,
    /// The share of new traces kept, 0 to 1. A request that arrives with a
    /// sampled `traceparent` is traced whatever the ratio, so a trace
    /// started upstream stays whole.
    pub sample_ratio: f64,
}

/// The OTLP/HTTP encodings; gRPC is not offered (every collector that
/// speaks it also takes HTTP on port 4318).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    #[default]
    HttpProtobuf,
    HttpJson,
}

/// The file's `[telemetry]`-level keys for traces (top-level, like every
/// other setting).
#[derive(Debug, Default)]
pub(super) struct TraceFile {
    pub otlp_endpoint: Option<String>,
    pub otlp_protocol: Option<String>,
    pub trace_sample_ratio: Option<f64>,
}

impl TelemetryConfig {
    /// From the environment (`env`, empty values already unset) over the
    /// file's values.
    pub(super) fn load(
        env: impl Fn(&str) -> Option<String>,
        file_metrics_listen: Option<String>,
        file_bootstrap_token_output: Option<PathBuf>,
        file_traces: TraceFile,
    ) -> Result<Self, ConfigError> {
        let metrics_listen = env(ENV_METRICS_LISTEN).or(file_metrics_listen);
        if let Some(listen) = &metrics_listen {
            validate_listen_of(ENV_METRICS_LISTEN, listen)?;
        }
        let bootstrap_token_output = env(ENV_BOOTSTRAP_TOKEN_OUTPUT)
            .map(PathBuf::from)
            .or(file_bootstrap_token_output);
        Ok(Self {
            metrics_listen,
            bootstrap_token_output,
            traces: TraceConfig::load(&env, file_traces)?,
        })
    }
}

impl TraceConfig {
    fn load(
        env: &impl Fn(&str) -> Option<String>,
        file: TraceFile,
    ) -> Result<Option<Self>, ConfigError> {
        let protocol = env(ENV_OTLP_PROTOCOL)
            .or(file.otlp_protocol)
            .map(|text| OtlpProtocol::parse(&text))
            .transpose()?
            .unwrap_or_default();
        let sample_ratio = match env(ENV_TRACE_SAMPLE_RATIO) {
            Some(text) => text.trim().parse::<f64>().map_err(|_| {
                ConfigError::invalid(ENV_TRACE_SAMPLE_RATIO, "must be a number from 0 to 1")
            })?,
            None => file.trace_sample_ratio.unwrap_or(1.0),
        };
        if !(0.0..=1.0).contains(&sample_ratio) {
            return Err(ConfigError::invalid(
                ENV_TRACE_SAMPLE_RATIO,
                "must be a number from 0 to 1",
            ));
        }
        let Some(base) = env(ENV_OTLP_ENDPOINT).or(file.otlp_endpoint) else {
            return Ok(None);
        };
        Ok(Some(Self {
            endpoint: traces_url(&base)?,
            protocol,
            sample_ratio,
        }))
    }
}

impl OtlpProtocol {
    fn parse(text: &str) -> Result<Self, ConfigError> {
        match text.trim() {
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Ok(Self::HttpJson),
            _ => Err(ConfigError::invalid(
                ENV_OTLP_PROTOCOL,
                "must be http/protobuf or http/json",
            )),
        }
    }
}

/// The traces URL of a collector given by its base URL (or already by its
/// traces URL).
fn traces_url(base: &str) -> Result<Url, ConfigError> {
    let refuse = |why: &str| ConfigError::invalid(ENV_OTLP_ENDPOINT, why.to_owned());
    let mut url = Url::parse(base.trim())
        .map_err(|_| refuse("must be an http(s) URL, e.g. http://collector:4318"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(refuse("must be an http(s) URL, e.g. http://collector:4318"));
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(refuse(
            "must have no query, fragment or credentials (headers go in OTEL_EXPORTER_OTLP_HEADERS)",
        ));
    }
    if !url.path().trim_end_matches('/').ends_with(TRACES_PATH) {
        let path = format!("{}/{TRACES_PATH}", url.path().trim_end_matches('/'));
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Option<TraceConfig>, ConfigError> {
        let env = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        };
        TraceConfig::load(&env, TraceFile::default())
    }

    #[test]
    fn traces_are_off_unless_an_endpoint_is_set() {
        assert_eq!(load(&[]).unwrap(), None);
        assert_eq!(load(&[(ENV_TRACE_SAMPLE_RATIO, "0.5")]).unwrap(), None);
    }

    #[test]
    fn the_endpoint_is_a_base_url_or_the_traces_url() {
        for (given, expected) in [
            ("http://collector:4318", "http://collector:4318/v1/traces"),
            ("http://collector:4318/", "http://collector:4318/v1/traces"),
            (
                "https://otel.example/otlp",
                "https://otel.example/otlp/v1/traces",
            ),
            (
                "http://collector:4318/v1/traces",
                "http://collector:4318/v1/traces",
            ),
        ] {
            let config = load(&[(ENV_OTLP_ENDPOINT, given)]).unwrap().unwrap();
            assert_eq!(config.endpoint.as_str(), expected, "{given}");
            assert_eq!(config.protocol, OtlpProtocol::HttpProtobuf);
            assert!((config.sample_ratio - 1.0).abs() < f64::EPSILON);
        }
    }

    #[test]
    fn bad_trace_settings_name_the_setting() {
        for (pairs, setting) in [
            (
                vec![(ENV_OTLP_ENDPOINT, "collector:4318")],
                ENV_OTLP_ENDPOINT,
            ),
            (
                vec![(ENV_OTLP_ENDPOINT, "ftp://collector")],
                ENV_OTLP_ENDPOINT,
            ),
            (
                vec![(ENV_OTLP_ENDPOINT, "http://u:p@collector")],
                ENV_OTLP_ENDPOINT,
            ),
            (
                vec![(ENV_OTLP_ENDPOINT, "http://c"), (ENV_OTLP_PROTOCOL, "grpc")],
                ENV_OTLP_PROTOCOL,
            ),
            (
                vec![
                    (ENV_OTLP_ENDPOINT, "http://c"),
                    (ENV_TRACE_SAMPLE_RATIO, "2"),
                ],
                ENV_TRACE_SAMPLE_RATIO,
            ),
            (
                vec![
                    (ENV_OTLP_ENDPOINT, "http://c"),
                    (ENV_TRACE_SAMPLE_RATIO, "half"),
                ],
                ENV_TRACE_SAMPLE_RATIO,
            ),
        ] {
            let error = load(&pairs).unwrap_err().to_string();
            assert!(error.starts_with(setting), "{pairs:?}: {error}");
        }
    }
}
