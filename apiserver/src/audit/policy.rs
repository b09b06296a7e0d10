//! kube-apiserver's audit policy (`--audit-policy-file`, `audit.k8s.io/v1` `Policy`, YAML
//! or JSON): read and checked once at start, then evaluated per request by pure functions.
//!
//! Contract, as `k8s.io/apiserver/pkg/audit/policy`: the first rule that matches decides
//! the request's level and omitted stages; no rule matching means level `None` with the
//! policy's `omitStages`. A rule's omitted stages are its own and the policy's together; a
//! rule's `omitManagedFields`, when set, overrides the policy's. Matching (`checker.go`):
//! `users` by name, `userGroups` by any group, `verbs` by the request verb; a rule with
//! `namespaces` or `resources` matches only resource requests (`""` names cluster-scoped
//! ones), one with `nonResourceURLs` only other paths (`*`, exact, or a trailing `*`
//! prefix); `resources` match the group exactly and the resource as `res`,
//! `res/sub`, `*`, `*/sub` or `res/*`, narrowed by `resourceNames`. A request that failed
//! authentication has no user, so a rule naming users or groups never matches it.
//! Loading refuses what kube's `validation.go` refuses (a level outside the four, an
//! unknown stage, a URL not starting with `/`, a `*` not at the end, URLs mixed with
//! resources or namespaces, `resourceNames` without `resources`, a bad group name), a
//! document that is not `audit.k8s.io/v1` `Policy`, and a policy with no rules. Unknown
//! fields are ignored, as kube's (non-strict) decoder does.

use std::collections::BTreeSet;
use std::path::Path;

use serde::Deserialize;

use crate::auth::User;
use crate::authz::Attributes;

/// How much of a request is recorded (ordered: each level records what the one before
/// does, and more).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "None" => Level::None,
            "Metadata" => Level::Metadata,
            "Request" => Level::Request,
            "RequestResponse" => Level::RequestResponse,
            _ => return None,
        })
    }
}

/// When in a request's life an event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

impl Stage {
    fn parse(s: &str) -> Option<Stage> {
        Some(match s {
            "RequestReceived" => Stage::RequestReceived,
            "ResponseStarted" => Stage::ResponseStarted,
            "ResponseComplete" => Stage::ResponseComplete,
            "Panic" => Stage::Panic,
            _ => return None,
        })
    }
}

/// Why a policy file is refused; the message names the file's field as kube does.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("failed decoding: {0}")]
    Decode(String),
    #[error("unknown group version {api_version:?} kind {kind:?} in policy (want audit.k8s.io/v1 Policy)")]
    GroupVersion { api_version: String, kind: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("loaded illegal policy with 0 rules")]
    NoRules,
}

fn invalid(field: String, message: impl Into<String>) -> PolicyError {
    PolicyError::Invalid {
        field,
        message: message.into(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPolicy {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRule {
    #[serde(default)]
    level: String,
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    user_groups: Vec<String>,
    #[serde(default)]
    verbs: Vec<String>,
    #[serde(default)]
    resources: Vec<GroupResources>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    non_resource_urls: Vec<String>,
    #[serde(default)]
    omit_stages: Vec<String>,
    #[serde(default)]
    omit_managed_fields: Option<bool>,
}

/// `resources[]` of a rule: a group, its resources, and optionally names.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct GroupResources {
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub level: Level,
    pub users: Vec<String>,
    pub user_groups: Vec<String>,
    pub verbs: Vec<String>,
    pub resources: Vec<GroupResources>,
    pub namespaces: Vec<String>,
    pub non_resource_urls: Vec<String>,
    /// The rule's own and the policy's.
    pub omit_stages: BTreeSet<Stage>,
    pub omit_managed_fields: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
    pub omit_stages: BTreeSet<Stage>,
    pub omit_managed_fields: bool,
}

/// What the policy says about one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestConfig {
    pub level: Level,
    pub omit_stages: BTreeSet<Stage>,
    pub omit_managed_fields: bool,
}

fn stages(list: &[String], field: &str) -> Result<BTreeSet<Stage>, PolicyError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            Stage::parse(s).ok_or_else(|| {
                invalid(
                    format!("{field}[{i}]"),
                    format!(
                        "Invalid value: {s:?}: allowed stages are RequestReceived,ResponseStarted,ResponseComplete,Panic"
                    ),
                )
            })
        })
        .collect()
}

/// A DNS subdomain as Kubernetes checks API group names.
fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Policy {
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Policy::parse(&text)
    }

    /// Parses and checks a policy document (YAML, of which JSON is a part).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy =
            serde_yaml::from_str(text).map_err(|e| PolicyError::Decode(e.to_string()))?;
        if raw.api_version != "audit.k8s.io/v1" || raw.kind != "Policy" {
            return Err(PolicyError::GroupVersion {
                api_version: raw.api_version,
                kind: raw.kind,
            });
        }
        let omit_stages = stages(&raw.omit_stages, "omitStages")?;
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, r) in raw.rules.into_iter().enumerate() {
            let at = |f: &str| format!("rules[{i}].{f}");
            let level = match r.level.as_str() {
                "" => return Err(invalid(at("level"), "Required value")),
                l => Level::parse(l).ok_or_else(|| {
                    invalid(
                        at("level"),
                        format!(
                            "Unsupported value: {l:?}: supported values: \"None\", \"Metadata\", \"Request\", \"RequestResponse\""
                        ),
                    )
                })?,
            };
            for (j, url) in r.non_resource_urls.iter().enumerate() {
                if url == "*" {
                    continue;
                }
                let field = format!("{}[{j}]", at("nonResourceURLs"));
                if !url.starts_with('/') {
                    return Err(invalid(
                        field,
                        format!("Invalid value: {url:?}: non-resource URL rules must begin with a '/' character"),
                    ));
                }
                if url
                    .char_indices()
                    .any(|(i, c)| c == '*' && i + 1 != url.len())
                {
                    return Err(invalid(
                        field,
                        format!("Invalid value: {url:?}: non-resource URL wildcards '*' must be the final character of the rule"),
                    ));
                }
            }
            for gr in &r.resources {
                if !gr.group.is_empty() && !dns_subdomain(&gr.group) {
                    return Err(invalid(
                        at("resources.group"),
                        format!(
                            "Invalid value: {:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                            gr.group
                        ),
                    ));
                }
                if !gr.resource_names.is_empty() && gr.resources.is_empty() {
                    return Err(invalid(
                        at("resources.resourceNames"),
                        "using resourceNames requires at least one resource",
                    ));
                }
            }
            let mut omit = stages(&r.omit_stages, &at("omitStages"))?;
            if !r.non_resource_urls.is_empty()
                && (!r.resources.is_empty() || !r.namespaces.is_empty())
            {
                return Err(invalid(
                    at("nonResourceURLs"),
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            omit.extend(omit_stages.iter().copied());
            rules.push(Rule {
                level,
                users: r.users,
                user_groups: r.user_groups,
                verbs: r.verbs,
                resources: r.resources,
                namespaces: r.namespaces,
                non_resource_urls: r.non_resource_urls,
                omit_stages: omit,
                omit_managed_fields: r.omit_managed_fields.unwrap_or(raw.omit_managed_fields),
            });
        }
        if rules.is_empty() {
            return Err(PolicyError::NoRules);
        }
        Ok(Policy {
            rules,
            omit_stages,
            omit_managed_fields: raw.omit_managed_fields,
        })
    }

    /// The level and omitted stages of a request by `user` (None: not authenticated).
    pub fn evaluate(&self, user: Option<&User>, a: &Attributes) -> RequestConfig {
        match self.rules.iter().find(|r| r.matches(user, a)) {
            Some(r) => RequestConfig {
                level: r.level,
                omit_stages: r.omit_stages.clone(),
                omit_managed_fields: r.omit_managed_fields,
            },
            None => RequestConfig {
                level: Level::None,
                omit_stages: self.omit_stages.clone(),
                omit_managed_fields: self.omit_managed_fields,
            },
        }
    }
}

fn has(list: &[String], s: &str) -> bool {
    list.iter().any(|x| x == s)
}

fn verb(a: &Attributes) -> &str {
    match a {
        Attributes::Resource(r) => &r.verb,
        Attributes::NonResource { verb, .. } => verb,
    }
}

/// `*`, the path itself, or a prefix ending in `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

impl Rule {
    fn matches(&self, user: Option<&User>, a: &Attributes) -> bool {
        if !self.users.is_empty() && !user.is_some_and(|u| has(&self.users, &u.name)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !user.is_some_and(|u| u.groups.iter().any(|g| has(&self.user_groups, g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !has(&self.verbs, verb(a)) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(a);
        }
        if !self.non_resource_urls.is_empty() {
            return match a {
                Attributes::Resource(_) => false,
                Attributes::NonResource { path, .. } => self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(path, spec)),
            };
        }
        true
    }

    fn matches_resource(&self, a: &Attributes) -> bool {
        let Attributes::Resource(r) = a else {
            return false;
        };
        if !self.namespaces.is_empty() && !has(&self.namespaces, &r.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = r.combined();
        self.resources
            .iter()
            .filter(|gr| gr.group == r.group)
            .any(|gr| {
                gr.resources.is_empty()
                    || gr.resources.iter().any(|res| {
                        (gr.resource_names.is_empty() || has(&gr.resource_names, &r.name))
                            && (*res == combined
                                || res == "*"
                                || (!r.subresource.is_empty()
                                    && res.strip_prefix("*/") == Some(r.subresource.as_str()))
                                || res.strip_suffix("/*") == Some(r.resource.as_str()))
                    })
            })
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
