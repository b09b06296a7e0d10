//! A request's events from the recorder to the log file, without a server.

use std::path::Path;
use std::time::Duration;

use http::{HeaderMap, Response, StatusCode};
use serde_json::{json, Value};

use super::*;
use crate::authz::ResourceAttributes;

const POLICY: &str = r#"
apiVersion: audit.k8s.io/v1
kind: Policy
omitManagedFields: true
rules:
- level: None
  users: [quiet]
- level: Metadata
  resources: [{group: "", resources: [secrets]}]
- level: RequestResponse
  resources: [{group: "", resources: [configmaps]}]
  omitStages: [RequestReceived]
- level: Request
  resources: [{group: "", resources: [pods]}]
- level: Metadata
"#;

fn auditor(dir: &Path) -> Arc<Auditor> {
    Auditor::start(AuditConfig {
        policy: Policy::parse(POLICY).expect("policy"),
        log: log::LogOptions {
            path: Some(dir.join("audit.log")),
            max_size_mb: 0,
            max_backups: 0,
            max_age_days: 0,
        },
    })
    .expect("auditor")
}

/// Waits until the log holds `n` lines and returns them.
async fn lines(dir: &Path, n: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.join("audit.log")).unwrap_or_default();
        // The writer may be mid-line: only whole lines count.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        let got: Vec<Value> = whole
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect();
        if got.len() >= n {
            assert_eq!(got.len(), n, "{text}");
            return got;
        }
        assert!(std::time::Instant::now() < deadline, "{n} lines: {text}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn admin() -> User {
    User {
        name: "admin".into(),
        uid: "u1".into(),
        groups: vec!["system:masters".into(), "system:authenticated".into()],
    }
}

fn on(verb: &str, resource: &str, name: &str) -> Attributes {
    Attributes::Resource(ResourceAttributes {
        verb: verb.into(),
        resource: resource.into(),
        namespace: "d".into(),
        name: name.into(),
        ..Default::default()
    })
}

fn recorder(a: &Arc<Auditor>, uri: &str) -> Recorder {
    let mut h = HeaderMap::new();
    h.insert("user-agent", "kubectl/v1.32.0".parse().unwrap());
    h.insert("x-forwarded-for", "10.0.0.1, 10.0.0.2".parse().unwrap());
    Recorder::new(
        a.clone(),
        "id-1",
        &uri.parse().unwrap(),
        &h,
        Some("127.0.0.1:5555".parse().unwrap()),
    )
}

fn answer(code: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(full(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

#[tokio::test]
async fn a_secret_create_at_metadata_keeps_its_data_out() {
    let dir = tempfile::tempdir().unwrap();
    let a = auditor(dir.path());
    let r = recorder(
        &a,
        "/api/v1/namespaces/d/secrets?fieldManager=kubectl-create",
    );
    r.begin(
        Some(&admin()),
        false,
        &on("create", "secrets", ""),
        Some("v1"),
        false,
    )
    .await;
    r.decision(true, "");
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s1", "namespace": "d"}, "data": {"password": "aHVudGVyMg=="}});
    r.request_body(&serde_json::to_vec(&secret).unwrap(), true);
    let resp = r.respond(answer(StatusCode::CREATED, &secret)).await;
    // The answer is passed on unchanged.
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), secret);
    let ev = lines(dir.path(), 2).await;
    assert_eq!(ev[0]["stage"], "RequestReceived");
    assert_eq!(ev[1]["stage"], "ResponseComplete");
    for e in &ev {
        assert_eq!(e["kind"], "Event");
        assert_eq!(e["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(e["level"], "Metadata");
        assert_eq!(e["auditID"], "id-1");
        assert_eq!(e["verb"], "create");
        assert_eq!(
            e["requestURI"],
            "/api/v1/namespaces/d/secrets?fieldManager=kubectl-create"
        );
        assert_eq!(
            e["user"],
            json!({"username": "admin", "uid": "u1", "groups": ["system:masters", "system:authenticated"]})
        );
        assert_eq!(e["sourceIPs"], json!(["10.0.0.1", "10.0.0.2", "127.0.0.1"]));
        assert_eq!(e["userAgent"], "kubectl/v1.32.0");
        assert!(!e.to_string().contains("aHVudGVyMg"), "{e}");
        assert!(e.get("requestObject").is_none() && e.get("responseObject").is_none());
    }
    // The received event is written before the decision and the body are known.
    assert!(ev[0].get("annotations").is_none());
    assert_eq!(ev[0]["stageTimestamp"], ev[0]["requestReceivedTimestamp"]);
    assert_eq!(
        ev[0]["objectRef"],
        json!({"resource": "secrets", "namespace": "d", "apiVersion": "v1"})
    );
    assert_eq!(
        ev[1]["objectRef"],
        json!({"resource": "secrets", "namespace": "d", "name": "s1", "apiVersion": "v1"})
    );
    assert_eq!(
        ev[1]["responseStatus"],
        json!({"metadata": {}, "code": 201})
    );
    assert_eq!(
        ev[1]["annotations"],
        json!({"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": ""})
    );
    let ts = ev[1]["stageTimestamp"].as_str().unwrap();
    assert_eq!(ts.len(), "2023-11-14T22:13:20.000001Z".len(), "{ts}");
}

#[tokio::test]
async fn levels_decide_objects_and_omitted_stages_are_not_written() {
    let dir = tempfile::tempdir().unwrap();
    let a = auditor(dir.path());
    // Request: the body (without managedFields), not the answer.
    let pod = json!({"metadata": {"name": "p", "managedFields": [{"manager": "x"}]}, "spec": {}});
    let r = recorder(&a, "/api/v1/namespaces/d/pods");
    r.begin(
        Some(&admin()),
        false,
        &on("create", "pods", ""),
        Some("v1"),
        false,
    )
    .await;
    r.request_body(&serde_json::to_vec(&pod).unwrap(), true);
    r.respond(answer(StatusCode::CREATED, &pod)).await;
    // RequestResponse, without its RequestReceived; a patch as sent (YAML).
    let r = recorder(&a, "/api/v1/namespaces/d/configmaps/c");
    r.begin(
        Some(&admin()),
        false,
        &on("patch", "configmaps", "c"),
        Some("v1"),
        false,
    )
    .await;
    r.request_body(b"data:\n  k: v\n", false);
    let cm = json!({"metadata": {"name": "c", "managedFields": []}, "data": {"k": "v"}});
    r.respond(answer(StatusCode::OK, &cm)).await;
    // None: nothing at all.
    let quiet = User {
        name: "quiet".into(),
        uid: String::new(),
        groups: vec![],
    };
    let r = recorder(&a, "/api/v1/namespaces/d/pods");
    r.begin(
        Some(&quiet),
        false,
        &on("list", "pods", ""),
        Some("v1"),
        false,
    )
    .await;
    r.respond(answer(StatusCode::OK, &json!({}))).await;
    let ev = lines(dir.path(), 3).await;
    assert_eq!(
        (ev[0]["stage"].as_str(), ev[0]["level"].as_str()),
        (Some("RequestReceived"), Some("Request"))
    );
    assert_eq!(
        ev[1]["requestObject"],
        json!({"metadata": {"name": "p"}, "spec": {}})
    );
    assert!(ev[1].get("responseObject").is_none());
    assert_eq!(ev[2]["stage"], "ResponseComplete");
    assert_eq!(ev[2]["level"], "RequestResponse");
    assert_eq!(ev[2]["requestObject"], json!({"data": {"k": "v"}}));
    assert_eq!(
        ev[2]["responseObject"],
        json!({"metadata": {"name": "c"}, "data": {"k": "v"}})
    );
}

#[tokio::test]
async fn errors_watches_failed_authentication_and_panics() {
    let dir = tempfile::tempdir().unwrap();
    let a = auditor(dir.path());
    // A forbidden request: the Status is copied, the decision is forbid.
    let r = recorder(&a, "/api/v1/namespaces/d/secrets");
    let alice = User {
        name: "alice".into(),
        uid: String::new(),
        groups: vec!["system:authenticated".into()],
    };
    r.begin(
        Some(&alice),
        false,
        &on("list", "secrets", ""),
        Some("v1"),
        false,
    )
    .await;
    r.decision(false, "");
    let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "secrets is forbidden: User \"alice\" cannot list resource \"secrets\"",
        "reason": "Forbidden", "details": {"kind": "secrets"}, "code": 403});
    r.respond(answer(StatusCode::FORBIDDEN, &status)).await;
    // A watch: ResponseStarted with the headers, ResponseComplete when the body goes.
    let r = recorder(&a, "/api/v1/namespaces/d/pods?watch=true");
    r.begin(
        Some(&alice),
        false,
        &on("watch", "pods", ""),
        Some("v1"),
        true,
    )
    .await;
    r.decision(true, "RBAC: allowed by RoleBinding \"r/d\"");
    let stream = futures::stream::iter(vec![Ok::<_, Infallible>(Frame::data(Bytes::from("{}\n")))]);
    let resp = r
        .respond(Response::new(
            http_body_util::StreamBody::new(stream).boxed(),
        ))
        .await;
    let started = lines(dir.path(), 4).await;
    assert_eq!(started[3]["stage"], "ResponseStarted");
    drop(resp);
    lines(dir.path(), 5).await;
    // Authentication failed: one event, no user, the 401.
    let r = recorder(&a, "/api/v1/namespaces/d/pods");
    r.begin(None, false, &on("list", "pods", ""), Some("v1"), false)
        .await;
    let unauthorized = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "Unauthorized", "reason": "Unauthorized", "code": 401});
    r.respond(answer(StatusCode::UNAUTHORIZED, &unauthorized))
        .await;
    // A panic.
    let r = recorder(&a, "/api/v1/namespaces/d/pods/p");
    r.begin(
        Some(&alice),
        false,
        &on("get", "pods", "p"),
        Some("v1"),
        false,
    )
    .await;
    r.panicked("boom").await;
    let ev = lines(dir.path(), 8).await;
    assert_eq!(ev[1]["stage"], "ResponseComplete");
    assert_eq!(
        ev[1]["responseStatus"],
        json!({"metadata": {}, "status": "Failure",
            "message": "secrets is forbidden: User \"alice\" cannot list resource \"secrets\"",
            "reason": "Forbidden", "details": {"kind": "secrets"}, "code": 403})
    );
    assert_eq!(
        ev[1]["annotations"]["authorization.k8s.io/decision"],
        "forbid"
    );
    assert_eq!(
        (ev[3]["stage"].as_str(), ev[4]["stage"].as_str()),
        (Some("ResponseStarted"), Some("ResponseComplete"))
    );
    assert_eq!(
        ev[4]["responseStatus"],
        json!({"metadata": {}, "code": 200})
    );
    assert_eq!(
        ev[4]["annotations"]["authorization.k8s.io/reason"],
        "RBAC: allowed by RoleBinding \"r/d\""
    );
    assert_eq!(ev[5]["stage"], "ResponseStarted");
    assert_eq!(ev[5]["user"], json!({}));
    assert_eq!(ev[5]["responseStatus"]["code"], 401);
    assert_eq!(ev[5]["responseStatus"]["reason"], "Unauthorized");
    assert_eq!(ev[6]["stage"], "RequestReceived");
    assert_eq!(ev[7]["stage"], "Panic");
    assert_eq!(
        ev[7]["responseStatus"]["message"],
        "APIServer panic'd: boom"
    );
    assert_eq!(ev[7]["responseStatus"]["code"], 500);
}

#[test]
fn source_ips_and_user_agents_as_kube() {
    let mut h = HeaderMap::new();
    let peer: SocketAddr = "192.168.1.1:443".parse().unwrap();
    assert_eq!(source_ips(&h, Some(peer)), ["192.168.1.1"]);
    h.insert(
        "x-forwarded-for",
        "1.1.1.1, junk, 192.168.1.1".parse().unwrap(),
    );
    h.insert("x-real-ip", "1.1.1.1".parse().unwrap());
    // The peer is not repeated when it is the last hop already.
    assert_eq!(source_ips(&h, Some(peer)), ["1.1.1.1", "192.168.1.1"]);
    h.insert("user-agent", "x".repeat(2000).parse().unwrap());
    let ua = user_agent(&h);
    assert_eq!(ua.len(), 1024 + "...TRUNCATED".len());
    assert!(ua.ends_with("...TRUNCATED"));
}
