//! A namespace's PodSecurity policy from its labels (kube's `api.PolicyToEvaluate`):
//! `pod-security.kubernetes.io/{enforce,audit,warn}` name a level and
//! `…/{enforce,audit,warn}-version` a policy version. Unlabelled modes are
//! `privileged:latest` (no exemptions or defaults are configurable here).
//!
//! Any version is evaluated with the latest checks (1.33's); the version given is still
//! what messages name.

use serde_json::{Map, Value};

use crate::error::FieldError;

const PREFIX: &str = "pod-security.kubernetes.io/";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        match s {
            "privileged" => Some(Level::Privileged),
            "baseline" => Some(Level::Baseline),
            "restricted" => Some(Level::Restricted),
            _ => None,
        }
    }
}

/// A level and the policy version it is named with (`latest` or `v1.x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelVersion {
    pub level: Level,
    pub version: String,
}

impl LevelVersion {
    fn privileged() -> Self {
        LevelVersion {
            level: Level::Privileged,
            version: "latest".into(),
        }
    }
}

impl std::fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// The three modes: enforce refuses, warn adds a `Warning` header, audit would annotate
/// the audit event (there is no audit log here: parsed, never acted on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Policy {
    /// `privileged:latest` everywhere: nothing is checked.
    pub fn privileged() -> Self {
        Policy {
            enforce: LevelVersion::privileged(),
            audit: LevelVersion::privileged(),
            warn: LevelVersion::privileged(),
        }
    }

    /// Nothing to evaluate: every mode privileged.
    pub fn is_privileged(&self) -> bool {
        [&self.enforce, &self.audit, &self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }

    /// The policy of a namespace with these labels, and what is wrong with them. A policy
    /// is always returned: an invalid enforce level enforces `restricted` (fail closed),
    /// an invalid warn or audit level is `privileged` (fail open), an invalid version is
    /// `latest`.
    pub fn from_labels(labels: Option<&Map<String, Value>>) -> (Policy, Vec<FieldError>) {
        let mut p = Policy::privileged();
        let mut errs = Vec::new();
        let Some(labels) = labels else {
            return (p, errs);
        };
        let modes: [(&str, &mut LevelVersion, Level); 3] = [
            ("enforce", &mut p.enforce, Level::Restricted),
            ("audit", &mut p.audit, Level::Privileged),
            ("warn", &mut p.warn, Level::Privileged),
        ];
        for (mode, lv, fallback) in modes {
            let key = format!("{PREFIX}{mode}");
            if let Some(v) = labels.get(&key) {
                let s = v.as_str().unwrap_or("");
                match Level::parse(s) {
                    Some(l) => lv.level = l,
                    None => {
                        lv.level = fallback;
                        errs.push(invalid(
                            &key,
                            s,
                            "must be one of privileged, baseline, restricted",
                        ));
                    }
                }
            }
            let key = format!("{PREFIX}{mode}-version");
            if let Some(v) = labels.get(&key) {
                let s = v.as_str().unwrap_or("");
                if valid_version(s) {
                    lv.version = s.to_string();
                } else {
                    lv.version = "latest".into();
                    errs.push(invalid(&key, s, "must be \"latest\" or \"v1.x\""));
                }
            }
        }
        (p, errs)
    }
}

fn invalid(label: &str, value: &str, why: &str) -> FieldError {
    FieldError::invalid(format!("metadata.labels[{label}]"), value, why)
}

/// `latest` or `v1.<minor>` (no leading zero, a minor that fits an int).
fn valid_version(s: &str) -> bool {
    if s == "latest" {
        return true;
    }
    let Some(minor) = s.strip_prefix("v1.") else {
        return false;
    };
    !minor.is_empty()
        && minor.bytes().all(|b| b.is_ascii_digit())
        && (minor == "0" || !minor.starts_with('0'))
        && minor.parse::<i32>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn unlabelled_namespaces_are_privileged() {
        let (p, errs) = Policy::from_labels(None);
        assert!(p.is_privileged() && errs.is_empty());
        let l = labels(json!({"team": "a"}));
        let (p, errs) = Policy::from_labels(Some(&l));
        assert!(p.is_privileged() && errs.is_empty());
        assert_eq!(p.enforce.to_string(), "privileged:latest");
    }

    #[test]
    fn levels_and_versions_come_from_the_labels() {
        let l = labels(json!({
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/warn-version": "v1.30",
            "pod-security.kubernetes.io/audit": "restricted",
        }));
        let (p, errs) = Policy::from_labels(Some(&l));
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(p.enforce.to_string(), "baseline:latest");
        assert_eq!(p.warn.to_string(), "restricted:v1.30");
        assert_eq!(p.audit.to_string(), "restricted:latest");
        assert!(!p.is_privileged());
    }

    #[test]
    fn bad_labels_fail_closed_for_enforce_and_open_for_warn() {
        let l = labels(json!({
            "pod-security.kubernetes.io/enforce": "strict",
            "pod-security.kubernetes.io/enforce-version": "v1.05",
            "pod-security.kubernetes.io/warn": "",
        }));
        let (p, errs) = Policy::from_labels(Some(&l));
        assert_eq!(p.enforce.to_string(), "restricted:latest");
        assert_eq!(p.warn.level, Level::Privileged);
        let msgs: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted",
                "metadata.labels[pod-security.kubernetes.io/enforce-version]: Invalid value: \"v1.05\": must be \"latest\" or \"v1.x\"",
                "metadata.labels[pod-security.kubernetes.io/warn]: Invalid value: \"\": must be one of privileged, baseline, restricted",
            ]
        );
    }

    #[test]
    fn versions_are_latest_or_v1_minor() {
        for ok in ["latest", "v1.0", "v1.25", "v1.99"] {
            assert!(valid_version(ok), "{ok}");
        }
        for bad in [
            "",
            "v1.",
            "v1.x",
            "v2.1",
            "1.25",
            "v1.025",
            "v1.99999999999",
            "v1.-1",
        ] {
            assert!(!valid_version(bad), "{bad}");
        }
    }
}
