//! The apiserver's errors and the one function that turns them into a `metav1.Status`
//! with the HTTP code and reason Kubernetes uses for each.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    ListMeta, Status, StatusCause, StatusDetails,
};

/// A group and resource, as Kubernetes names them in messages ("pods", "deployments.apps").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupResource {
    pub group: &'static str,
    pub resource: &'static str,
}

impl std::fmt::Display for GroupResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.group.is_empty() {
            f.write_str(self.resource)
        } else {
            write!(f, "{}.{}", self.resource, self.group)
        }
    }
}

/// One invalid field, as `field.Error` in Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    /// The rejected value, already rendered as Kubernetes renders it (quoted strings).
    Invalid(String),
    Forbidden,
    /// The rejected value, rendered, and the supported ones (quoted when shown).
    NotSupported(String, Vec<String>),
    Duplicate(String),
    TooLong(usize),
    /// (actual, max)
    TooMany(usize, usize),
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Required,
            detail: detail.into(),
        }
    }
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Invalid(format!("{value:?}")),
            detail: detail.into(),
        }
    }
    /// An invalid value that is not a string (a number, a list), rendered as given.
    pub fn invalid_raw(field: impl Into<String>, value: String, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Invalid(value),
            detail: detail.into(),
        }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Forbidden,
            detail: detail.into(),
        }
    }
    pub fn not_supported(field: impl Into<String>, value: &str, valid: &[&'static str]) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::NotSupported(
                format!("{value:?}"),
                valid.iter().map(|v| v.to_string()).collect(),
            ),
            detail: String::new(),
        }
    }
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::Duplicate(format!("{value:?}")),
            detail: String::new(),
        }
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::TooLong(max),
            detail: String::new(),
        }
    }

    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::TooMany(actual, max),
            detail: String::new(),
        }
    }

    fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::TooLong(_) => "FieldValueTooLong",
            FieldErrorKind::TooMany(..) => "FieldValueTooMany",
        }
    }

    /// The message without the field path: "Required value", `Invalid value: "x": why`.
    fn body(&self) -> String {
        let mut s = match &self.kind {
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Invalid(v) => format!("Invalid value: {v}"),
            FieldErrorKind::Forbidden => "Forbidden".to_string(),
            FieldErrorKind::NotSupported(v, valid) => {
                let quoted: Vec<String> = valid.iter().map(|s| format!("{s:?}")).collect();
                format!(
                    "Unsupported value: {v}: supported values: {}",
                    quoted.join(", ")
                )
            }
            FieldErrorKind::Duplicate(v) => format!("Duplicate value: {v}"),
            FieldErrorKind::TooLong(max) => format!("Too long: may not be more than {max} bytes"),
            FieldErrorKind::TooMany(n, max) => {
                format!("Too many: {n}: must have at most {max} items")
            }
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Everything a request can fail with. Each variant is one `metav1.Status` reason.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{gr} \"{name}\" not found")]
    NotFound { gr: GroupResource, name: String },
    /// A path no route matches.
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 405 with a message of its own (a create of custom resources whose definition is
    /// being deleted).
    #[error("{0}")]
    MethodNotSupported(String),
    #[error("{gr} \"{name}\" already exists")]
    AlreadyExists { gr: GroupResource, name: String },
    #[error("Operation cannot be fulfilled on {gr} \"{name}\": {message}")]
    Conflict {
        gr: GroupResource,
        name: String,
        message: String,
    },
    /// A resourceVersion or continue token older than what is kept.
    #[error("{0}")]
    Expired(String),
    #[error("the server has rejected the request because the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("Request entity too large: The allowed maximum operations in a JSON patch is 10000, got {0}")]
    TooLargeJsonPatch(usize),
    #[error(
        "the body of the request was in an unknown format - accepted media types include: {0}"
    )]
    UnsupportedMediaType(&'static str),
    /// The client accepts no media type this resource is served in.
    #[error("only the following media types are accepted: {0}")]
    NotAcceptable(&'static str),
    #[error("{}{} \"{name}\" is invalid: {}", kind, qualify(group), render_causes(.causes))]
    Invalid {
        kind: &'static str,
        group: &'static str,
        name: String,
        causes: Vec<FieldError>,
    },
    /// A patch that does not apply (a failed JSON patch `test`, a missing path): 422 with
    /// kube-apiserver's generic message, and here what failed after it.
    #[error("the server rejected our request due to an error in our request: {0}")]
    PatchRejected(String),
    /// Server-side apply would take fields other managers own.
    #[error("{message}")]
    ApplyConflict {
        message: String,
        /// (manager, field path)
        fields: Vec<(String, String)>,
    },
    #[error("{0}")]
    TooManyRequests(String),
    /// 429 with kube's `details.causes` and `retryAfterSeconds` (an eviction a disruption
    /// budget refuses: the cause's reason is `DisruptionBudget`).
    #[error("{message}")]
    TooManyRequestsBecause {
        message: String,
        cause_reason: &'static str,
        cause: String,
        retry_after_seconds: i32,
    },
    #[error("{0}")]
    Internal(String),
    /// The kvstore cannot serve (no quorum, no member reachable).
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Timeout(String),
    /// A refusal in a status an admission webhook gave: its code (at least 400), reason
    /// and message.
    #[error("{message}")]
    Denied {
        code: u16,
        reason: String,
        message: String,
    },
}

/// `.group` after a kind of a named group, as Kubernetes qualifies kinds in messages.
fn qualify(group: &str) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!(".{group}")
    }
}

fn render_causes(causes: &[FieldError]) -> String {
    match causes {
        [one] => one.to_string(),
        many => {
            let all: Vec<String> = many.iter().map(|c| c.to_string()).collect();
            format!("[{}]", all.join(", "))
        }
    }
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::MethodNotAllowed | ApiError::MethodNotSupported(_) => 405,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Expired(_) => 410,
            ApiError::TooLarge(_) | ApiError::TooLargeJsonPatch(_) => 413,
            ApiError::NotAcceptable(_) => 406,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Invalid { .. } | ApiError::PatchRejected(_) => 422,
            ApiError::TooManyRequests(_) | ApiError::TooManyRequestsBecause { .. } => 429,
            ApiError::Internal(_) => 500,
            ApiError::Unavailable(_) => 503,
            ApiError::Timeout(_) => 504,
            ApiError::Denied { code, .. } => *code,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::MethodNotAllowed | ApiError::MethodNotSupported(_) => "MethodNotAllowed",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Expired(_) => "Expired",
            ApiError::TooLarge(_) | ApiError::TooLargeJsonPatch(_) => "RequestEntityTooLarge",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Invalid { .. } | ApiError::PatchRejected(_) => "Invalid",
            ApiError::TooManyRequests(_) | ApiError::TooManyRequestsBecause { .. } => {
                "TooManyRequests"
            }
            ApiError::Internal(_) => "InternalError",
            ApiError::Unavailable(_) => "ServiceUnavailable",
            ApiError::Timeout(_) => "Timeout",
            ApiError::Denied { .. } => "",
        }
    }

    /// The `metav1.Status` a client receives for this error.
    pub fn to_status(&self) -> Status {
        let details = match self {
            ApiError::NotFound { gr, name }
            | ApiError::AlreadyExists { gr, name }
            | ApiError::Conflict { gr, name, .. } => Some(StatusDetails {
                name: Some(name.clone()),
                group: Some(gr.group.to_string()),
                kind: Some(gr.resource.to_string()),
                ..Default::default()
            }),
            ApiError::Invalid {
                kind,
                group,
                name,
                causes,
            } => Some(StatusDetails {
                name: Some(name.clone()),
                group: Some(group.to_string()),
                kind: Some(kind.to_string()),
                causes: Some(
                    causes
                        .iter()
                        .map(|c| StatusCause {
                            field: Some(c.field.clone()),
                            message: Some(c.body()),
                            reason: Some(c.reason().to_string()),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ApiError::TooManyRequestsBecause {
                cause_reason,
                cause,
                retry_after_seconds,
                ..
            } => Some(StatusDetails {
                causes: Some(vec![StatusCause {
                    field: None,
                    message: Some(cause.clone()),
                    reason: Some(cause_reason.to_string()),
                }]),
                retry_after_seconds: Some(*retry_after_seconds).filter(|s| *s > 0),
                ..Default::default()
            }),
            ApiError::ApplyConflict { fields, .. } => Some(StatusDetails {
                causes: Some(
                    fields
                        .iter()
                        .map(|(manager, field)| StatusCause {
                            field: Some(field.clone()),
                            message: Some(format!("conflict with {manager}")),
                            reason: Some("FieldManagerConflict".into()),
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            _ => None,
        };
        Status {
            code: Some(self.code() as i32),
            details,
            message: Some(self.to_string()),
            metadata: ListMeta::default(),
            reason: match self {
                ApiError::Denied { reason, .. } => Some(reason.clone()),
                _ => Some(self.reason().to_string()),
            },
            status: Some("Failure".to_string()),
        }
    }
}

/// The JSON body of a Status as kube-apiserver writes it: Go's field order (`kind`,
/// `apiVersion`, `metadata`, `status`, `message`, `reason`, `details`, `code`), empty
/// fields left out, `metadata` always present. Clients surface this text verbatim (the
/// Python client puts it in its exceptions), so it must match byte for byte. No trailing
/// newline: a watch ERROR event embeds it; [`status_body`] adds the one a response has.
pub fn status_json(status: &Status) -> Vec<u8> {
    serde_json::to_vec(&GoStatus::from(status)).unwrap_or_default()
}

/// A Status as a whole response body: Go's encoder ends it with a newline.
pub fn status_body(status: &Status) -> Vec<u8> {
    let mut out = status_json(status);
    out.push(b'\n');
    out
}

/// A string field Go would write: present and not empty.
fn go(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GoStatus<'a> {
    kind: &'static str,
    api_version: &'static str,
    metadata: GoListMeta<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    details: Option<GoDetails<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i32>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GoListMeta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    self_link: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource_version: Option<&'a str>,
    #[serde(rename = "continue", skip_serializing_if = "Option::is_none")]
    continue_: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    remaining_item_count: Option<i64>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GoDetails<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    causes: Vec<GoCause<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_seconds: Option<i32>,
}

#[derive(serde::Serialize)]
struct GoCause<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl<'a> From<&'a Status> for GoStatus<'a> {
    fn from(s: &'a Status) -> Self {
        GoStatus {
            kind: "Status",
            api_version: "v1",
            metadata: GoListMeta {
                self_link: go(&s.metadata.self_link),
                resource_version: go(&s.metadata.resource_version),
                continue_: go(&s.metadata.continue_),
                remaining_item_count: s.metadata.remaining_item_count,
            },
            status: go(&s.status),
            message: go(&s.message),
            reason: go(&s.reason),
            details: s.details.as_ref().map(|d| GoDetails {
                name: go(&d.name),
                group: go(&d.group),
                kind: go(&d.kind),
                uid: go(&d.uid),
                causes: d
                    .causes
                    .iter()
                    .flatten()
                    .map(|c| GoCause {
                        reason: go(&c.reason),
                        message: go(&c.message),
                        field: go(&c.field),
                    })
                    .collect(),
                retry_after_seconds: d.retry_after_seconds.filter(|s| *s != 0),
            }),
            code: s.code.filter(|c| *c != 0),
        }
    }
}

/// The Status a successful delete of a collection or subresource answers with.
pub fn success_status(code: i32) -> Status {
    Status {
        code: Some(code),
        status: Some("Success".into()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_message_lists_every_cause_as_kubernetes_does() {
        let e = ApiError::Invalid {
            kind: "Pod",
            group: "",
            name: "p".into(),
            causes: vec![
                FieldError::required("spec.containers[0].image", ""),
                FieldError::invalid("metadata.name", "A", "must be lowercase"),
            ],
        };
        assert_eq!(
            e.to_string(),
            "Pod \"p\" is invalid: [spec.containers[0].image: Required value, \
             metadata.name: Invalid value: \"A\": must be lowercase]"
        );
        let s = e.to_status();
        assert_eq!(s.code, Some(422));
        let causes = s.details.unwrap().causes.unwrap();
        assert_eq!(causes[1].reason.as_deref(), Some("FieldValueInvalid"));
        assert_eq!(causes[1].field.as_deref(), Some("metadata.name"));
    }

    #[test]
    fn conflict_and_not_found_name_the_group_resource() {
        let gr = GroupResource {
            group: "apps",
            resource: "deployments",
        };
        let e = ApiError::NotFound {
            gr: gr.clone(),
            name: "web".into(),
        };
        assert_eq!(e.to_string(), "deployments.apps \"web\" not found");
        let c = ApiError::Conflict {
            gr,
            name: "web".into(),
            message: "x".into(),
        };
        assert_eq!(c.code(), 409);
        assert_eq!(c.to_status().reason.as_deref(), Some("Conflict"));
    }

    #[test]
    fn status_bytes_match_kube_apiserver() {
        // kube-apiserver 1.32's body for a second create of a Service, byte for byte.
        let e = ApiError::AlreadyExists {
            gr: GroupResource {
                group: "",
                resource: "services",
            },
            name: "mock-2".into(),
        };
        assert_eq!(
            String::from_utf8(status_body(&e.to_status())).unwrap(),
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\
             \"message\":\"services \\\"mock-2\\\" already exists\",\"reason\":\"AlreadyExists\",\
             \"details\":{\"name\":\"mock-2\",\"kind\":\"services\"},\"code\":409}\n"
        );
        let ok = String::from_utf8(status_json(&success_status(200))).unwrap();
        assert_eq!(
            ok,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Success\",\"code\":200}"
        );
    }
}
