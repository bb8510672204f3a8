//! What SIGHUP reloads: a registry of the parts of a running node that can
//! take new settings without a restart (the log filter, TLS certificates,
//! limits). Each registers a hook; a reload re-reads the configuration and
//! hands it to every hook, which applies what changed and says so.

use std::sync::{Arc, Mutex};

use crate::config::Config;

/// A hook answers what it changed (`Some("info -> debug")`), `None` when
/// nothing did, or why it could not apply the new settings (the old ones
/// stay in force).
pub type ReloadHook = Arc<dyn Fn(&Config) -> Result<Option<String>, String> + Send + Sync>;

/// The node's reload hooks. Cheap to clone; every clone shares one list.
#[derive(Clone, Default)]
pub struct Reloads {
    hooks: Arc<Mutex<Vec<(&'static str, ReloadHook)>>>,
}

impl std::fmt::Debug for Reloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self
            .hooks
            .lock()
            .map(|h| h.iter().map(|(n, _)| *n).collect())
            .unwrap_or_default();
        f.debug_struct("Reloads").field("hooks", &names).finish()
    }
}

/// What one reload did, part by part.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// `what: change` for each part that took new settings.
    pub changed: Vec<String>,
    /// Parts whose settings were the same.
    pub unchanged: Vec<&'static str>,
    /// Parts that refused the new settings, and why.
    pub failed: Vec<(&'static str, String)>,
}

impl Reloads {
    /// Registers `hook` under `what` (`"log level"`, `"TLS certificate"`,
    /// `"limits"`), called on every reload in registration order.
    pub fn register(
        &self,
        what: &'static str,
        hook: impl Fn(&Config) -> Result<Option<String>, String> + Send + Sync + 'static,
    ) {
        if let Ok(mut hooks) = self.hooks.lock() {
            hooks.push((what, Arc::new(hook)));
        }
    }

    /// Hands `config` to every hook.
    pub fn reload(&self, config: &Config) -> ReloadReport {
        // Run the hooks outside the lock: a hook may register another.
        let hooks: Vec<(&'static str, ReloadHook)> =
            self.hooks.lock().map(|h| h.clone()).unwrap_or_default();
        let mut report = ReloadReport::default();
        for (what, hook) in hooks {
            match hook(config) {
                Ok(Some(change)) => report.changed.push(format!("{what}: {change}")),
                Ok(None) => report.unchanged.push(what),
                Err(e) => report.failed.push((what, e)),
            }
        }
        report
    }

    /// Reloads and logs what happened, one line, plus one per failure.
    pub fn reload_and_log(&self, config: &Config) -> ReloadReport {
        let report = self.reload(config);
        for (what, error) in &report.failed {
            tracing::warn!(what = %what, error = %error, "reload: kept the old settings");
        }
        let changed = if report.changed.is_empty() {
            "nothing".to_owned()
        } else {
            report.changed.join("; ")
        };
        tracing::info!(changed = %changed, unchanged = %report.unchanged.join(", "), "reloaded");
        report
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn every_hook_runs_and_reports() {
        let config = Config::load_with(None, |_| None).unwrap();
        let reloads = Reloads::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        reloads.register("limits", move |_| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(Some("messages 2/s -> 4/s".to_owned()))
        });
        reloads.register("log level", |_| Ok(None));
        reloads.register("TLS certificate", |_| Err("no such file".to_owned()));
        let report = reloads.reload(&config);
        assert_eq!(report.changed, ["limits: messages 2/s -> 4/s"]);
        assert_eq!(report.unchanged, ["log level"]);
        assert_eq!(
            report.failed,
            [("TLS certificate", "no such file".to_owned())]
        );
        let shared = reloads.clone();
        shared.reload(&config);
        drop(reloads);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
