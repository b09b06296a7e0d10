//! Checkers: each reads the history (and what the workload observed) and answers valid,
//! invalid (with the anomalies it found) or unknown (it could not decide, e.g. out of time).
//! Unknown is never reported as valid.

pub mod informers;
pub mod leaders;
pub mod linear;
pub mod objects;
pub mod pods;
pub mod register;
pub mod set;
pub mod watch;

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Validity {
    Valid,
    Invalid,
    Unknown,
}

impl Validity {
    /// Invalid beats unknown beats valid.
    pub fn merge(self, other: Validity) -> Validity {
        use Validity::*;
        match (self, other) {
            (Invalid, _) | (_, Invalid) => Invalid,
            (Unknown, _) | (_, Unknown) => Unknown,
            _ => Valid,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub checker: String,
    pub valid: Validity,
    /// Counts and other figures the checker found worth reporting.
    pub stats: serde_json::Value,
    /// One entry per anomaly, each with the smallest piece of history that shows it.
    pub anomalies: Vec<serde_json::Value>,
}

impl Verdict {
    pub fn new(checker: &str) -> Verdict {
        Verdict {
            checker: checker.to_string(),
            valid: Validity::Valid,
            stats: serde_json::json!({}),
            anomalies: Vec::new(),
        }
    }

    pub fn anomaly(&mut self, a: serde_json::Value) {
        self.valid = Validity::Invalid;
        // A long run can find thousands of the same anomaly; the first ones tell the story.
        if self.anomalies.len() < 50 {
            self.anomalies.push(a);
        }
    }

    pub fn unknown(&mut self, why: &str) {
        self.valid = self.valid.merge(Validity::Unknown);
        self.stats["unknown-because"] = serde_json::Value::String(why.to_string());
    }
}
