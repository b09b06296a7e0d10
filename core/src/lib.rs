//! Flotilla's pure core, in kube-core's role: the small pieces of Kubernetes semantics and
//! retry arithmetic that every component shares, as plain functions and data. Nothing here
//! does I/O, reads the clock, spawns or sleeps: callers pass the time in and do the waiting
//! themselves, so everything is testable without a runtime.
//!
//! Layout:
//! - `labels.rs`: label selectors — the string form (`a=b,c!=d,e in (x,y),!f,g`, parsed as
//!   `k8s.io/apimachinery/pkg/labels` does, with its messages), `metav1.LabelSelector` and
//!   node selector terms; matching and printing.
//! - `fields.rs`: field selectors (`a=b,c!=d`, `\` escapes) and their matching.
//! - `names.rs`: Kubernetes' name rules (RFC 1123 labels and subdomains, DNS-1035 labels,
//!   qualified names, label keys and values) with its messages.
//! - `quantity.rs`: resource quantities (`100m`, `1.5Gi`, `2e3`) parsed to numbers and
//!   formatted back; sums saturate.
//! - `cron.rs`: CronJob schedules (five fields, descriptors, `@every`) and time zones,
//!   evaluated on a zone's wall clock.
//! - `duration.rs`: Go-style durations for flags (`15s`, `1h30m`, `500ms`, bare seconds).
//! - `taints.rs`: taints and tolerations: matching, and how long a NoExecute taint is
//!   tolerated.
//! - `backoff.rs`: exponential backoff (initial, doubling, capped, optional jitter, reset)
//!   and its per-key variant.
//! - `ratelimit.rs`: a token bucket (rate, burst) that says how long a taker must wait.
//! - `histogram.rs`: a Prometheus histogram (cumulative buckets, sum, count) and its text
//!   exposition.
//! - `process.rs`: the standard `process_*` metrics from the texts of `/proc` files.

pub mod backoff;
pub mod cidr;
pub mod cron;
pub mod duration;
pub mod fields;
pub mod histogram;
pub mod labels;
pub mod names;
pub mod process;
pub mod quantity;
pub mod ratelimit;
pub mod taints;
