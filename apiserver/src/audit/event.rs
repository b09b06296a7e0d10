//! The `audit.k8s.io/v1` `Event` a log line holds, with Go's field names, order and
//! omissions (`k8s.io/apiserver/pkg/apis/audit/v1/types.go`): `user` and both timestamps
//! always, `impersonatedUser`, `sourceIPs`, `userAgent`, `objectRef`, `responseStatus`,
//! `requestObject`, `responseObject` and `annotations` only when set; a `responseStatus`
//! always carries `"metadata":{}` as Go writes an empty `ListMeta`. Times are
//! `metav1.MicroTime`: RFC 3339 in UTC with six fractional digits.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

use super::policy::{Level, Stage};

/// A moment as `metav1.MicroTime` writes it: `2006-01-02T15:04:05.000000Z`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MicroTime(pub SystemTime);

impl MicroTime {
    pub fn now() -> Self {
        MicroTime(SystemTime::now())
    }
}

/// RFC 3339 in UTC with microseconds (times before 1970 print as the epoch).
pub fn format_micro(t: SystemTime) -> String {
    use k8s_openapi::jiff::Timestamp;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ts = Timestamp::try_from(UNIX_EPOCH + d).unwrap_or(Timestamp::UNIX_EPOCH);
    format!(
        "{}.{:06}Z",
        ts.strftime("%Y-%m-%dT%H:%M:%S"),
        d.subsec_micros()
    )
}

impl Serialize for MicroTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_micro(self.0))
    }
}

/// `authentication.k8s.io/v1` `UserInfo`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UserInfo {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

/// The bounded part of a `metav1.Status` kube copies into an event.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ResponseStatus {
    /// Go writes an empty `ListMeta` as `{}`.
    pub metadata: BTreeMap<String, Value>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
    #[serde(skip_serializing_if = "is_zero")]
    pub code: u16,
}

fn is_zero(c: &u16) -> bool {
    *c == 0
}

impl ResponseStatus {
    /// Status, message, reason, details and code of a `Status` object's JSON.
    pub fn from_status(v: &Value) -> Self {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        ResponseStatus {
            metadata: BTreeMap::new(),
            status: s("status"),
            message: s("message"),
            reason: s("reason"),
            details: v.get("details").filter(|d| !d.is_null()).cloned(),
            code: v
                .get("code")
                .and_then(Value::as_u64)
                .and_then(|c| u16::try_from(c).ok())
                .unwrap_or(0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    pub user: UserInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<UserInfo>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<ResponseStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    pub request_received_timestamp: MicroTime,
    pub stage_timestamp: MicroTime,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Event {
    pub fn new(level: Level, audit_id: String, received: MicroTime) -> Self {
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level,
            audit_id,
            stage: Stage::RequestReceived,
            request_uri: String::new(),
            verb: String::new(),
            user: UserInfo::default(),
            impersonated_user: None,
            source_ips: Vec::new(),
            user_agent: String::new(),
            object_ref: None,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: received,
            stage_timestamp: received,
            annotations: BTreeMap::new(),
        }
    }

    /// One log line: the JSON object and a newline.
    pub fn line(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec(self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// The object without `metadata.managedFields` (`omitManagedFields`): an object, each
/// item of a list, each row's object of a Table.
pub fn strip_managed_fields(v: &mut Value) {
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("managedFields");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        for i in items {
            strip_managed_fields(i);
        }
    }
    if let Some(rows) = v.get_mut("rows").and_then(Value::as_array_mut) {
        for r in rows {
            if let Some(o) = r.get_mut("object") {
                strip_managed_fields(o);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_utc_with_microseconds() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(format_micro(t), "2023-11-14T22:13:20.123456Z");
        assert_eq!(format_micro(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        // A leap day.
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(format_micro(t), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn an_event_is_written_as_kube_writes_it() {
        let t = MicroTime(UNIX_EPOCH + Duration::from_micros(1_700_000_000_000_001));
        let mut e = Event::new(Level::Metadata, "a-1".into(), t);
        e.stage = Stage::ResponseComplete;
        e.request_uri = "/api/v1/namespaces/d/pods?limit=500".into();
        e.verb = "list".into();
        e.user = UserInfo {
            username: "admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
        };
        e.source_ips = vec!["127.0.0.1".into()];
        e.object_ref = Some(ObjectRef {
            resource: "pods".into(),
            namespace: "d".into(),
            api_version: "v1".into(),
            ..Default::default()
        });
        e.response_status = Some(ResponseStatus {
            code: 200,
            ..Default::default()
        });
        e.annotations
            .insert("authorization.k8s.io/decision".into(), "allow".into());
        e.annotations
            .insert("authorization.k8s.io/reason".into(), String::new());
        let line = String::from_utf8(e.line()).unwrap();
        assert_eq!(
            line,
            concat!(
                r#"{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1","#,
                r#""stage":"ResponseComplete","requestURI":"/api/v1/namespaces/d/pods?limit=500","#,
                r#""verb":"list","user":{"username":"admin","groups":["system:masters"]},"#,
                r#""sourceIPs":["127.0.0.1"],"objectRef":{"resource":"pods","namespace":"d","apiVersion":"v1"},"#,
                r#""responseStatus":{"metadata":{},"code":200},"#,
                r#""requestReceivedTimestamp":"2023-11-14T22:13:20.000001Z","#,
                r#""stageTimestamp":"2023-11-14T22:13:20.000001Z","#,
                r#""annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}"#,
                "\n"
            )
        );
        let st = ResponseStatus::from_status(&serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "pods is forbidden", "reason": "Forbidden",
            "details": {"kind": "pods"}, "code": 403
        }));
        assert_eq!(
            serde_json::to_string(&st).unwrap(),
            r#"{"metadata":{},"status":"Failure","message":"pods is forbidden","reason":"Forbidden","details":{"kind":"pods"},"code":403}"#
        );
    }

    #[test]
    fn managed_fields_are_left_out_of_objects_lists_and_tables() {
        let mut v = serde_json::json!({
            "metadata": {"name": "a", "managedFields": [{}]},
            "items": [{"metadata": {"name": "b", "managedFields": [{}]}}],
            "rows": [{"object": {"metadata": {"name": "c", "managedFields": [{}]}}}]
        });
        strip_managed_fields(&mut v);
        assert!(!v.to_string().contains("managedFields"), "{v}");
    }
}
