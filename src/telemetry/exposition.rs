//! The two exposition formats `/metrics` answers in.
//!
//! The registry encodes OpenMetrics, which Prometheus asks for by its
//! `Accept` header. Everything else (`promtool check metrics`, older
//! scrapers, curl) reads the Prometheus text format 0.0.4, where a
//! counter's family carries its `_total` name, there is no info type, no
//! `# UNIT` and no `# EOF`: [`to_text_format`] rewrites those lines.

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4`.
    Text,
}

impl Format {
    /// The format an `Accept` header asks for: OpenMetrics when it names
    /// it (as Prometheus does), the text format otherwise.
    pub fn negotiate(accept: Option<&str>) -> Self {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Self::OpenMetrics,
            _ => Self::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrites an OpenMetrics exposition into the text format 0.0.4.
///
/// Samples are the same in both; only the metadata lines differ. A
/// family's `# HELP` precedes its `# TYPE`, so it is held until the type
/// says which name the family has in the text format.
pub fn to_text_format(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut help: Option<(&str, &str)> = None;
    for line in open_metrics.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help = Some((name, text));
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let (name, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "gauge" | "histogram" | "summary" => (name.to_owned(), kind),
                _ => (name.to_owned(), "untyped"),
            };
            if let Some((_, text)) = help.take() {
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_infos_get_their_text_format_names() {
        let open = "# HELP a_requests Requests.\n# TYPE a_requests counter\na_requests_total{m=\"GET\"} 3\n\
                    # HELP a_build The version.\n# TYPE a_build info\na_build_info{version=\"1\"} 1\n\
                    # HELP a_open Open.\n# TYPE a_open gauge\n# UNIT a_open sockets\na_open 2\n# EOF\n";
        assert_eq!(
            to_text_format(open),
            "# HELP a_requests_total Requests.\n# TYPE a_requests_total counter\na_requests_total{m=\"GET\"} 3\n\
             # HELP a_build_info The version.\n# TYPE a_build_info gauge\na_build_info{version=\"1\"} 1\n\
             # HELP a_open Open.\n# TYPE a_open gauge\na_open 2\n"
        );
    }

    #[test]
    fn prometheus_gets_open_metrics_and_others_text() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
    }
}
