//! Admission policies as pure functions over objects: what a plugin decides, without the
//! stored state it reads. The plugin list that runs them with that state (a namespace's
//! labels, PriorityClasses) is `store/admission.rs`.
//!
//! - `podsecurity/`: Pod Security Standards (the PodSecurity admission plugin's checks,
//!   policy version `latest` of kube 1.33) and the namespace labels that select them.

pub mod podsecurity;
