//! Conversion reviews against a webhook stand-in that answers as the test says.

use super::*;

/// Answers each review with what `answer` makes of its request.
struct Stub<F: Fn(&Value) -> Value + Send + Sync>(F, std::sync::Mutex<usize>);

impl<F: Fn(&Value) -> Value + Send + Sync> Caller for Stub<F> {
    fn post(&self, _hook: &Hook, review: Vec<u8>) -> Result<bytes::Bytes, String> {
        *self.1.lock().unwrap() += 1;
        let req: Value = serde_json::from_slice(&review).unwrap();
        assert_eq!(req["kind"], "ConversionReview");
        Ok(serde_json::to_vec(&(self.0)(&req["request"]))
            .unwrap()
            .into())
    }
}

fn stub<F: Fn(&Value) -> Value + Send + Sync>(f: F) -> Stub<F> {
    Stub(f, std::sync::Mutex::new(0))
}

fn hook() -> Hook {
    Hook {
        crd: "crontabs.stable.example.com".into(),
        client: WebhookClientConfig::default(),
    }
}

fn obj(version: &str, name: &str) -> Value {
    json!({"apiVersion": format!("stable.example.com/{version}"), "kind": "CronTab",
           "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                        "resourceVersion": "7", "labels": {"a": "1"}},
           "spec": {"cronSpec": "* * * * *"}})
}

/// A webhook converting v1 to v2: `spec.cronSpec` becomes `spec.schedule`.
fn answer(req: &Value) -> Value {
    let converted: Vec<Value> = req["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let mut o = o.clone();
            o["apiVersion"] = req["desiredAPIVersion"].clone();
            o["spec"] = json!({"schedule": o["spec"]["cronSpec"]});
            o["metadata"]["labels"]["converted"] = json!("yes");
            o["metadata"]["resourceVersion"] = json!("999");
            o
        })
        .collect();
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
           "response": {"uid": req["uid"], "convertedObjects": converted,
                        "result": {"status": "Success"}}})
}

#[test]
fn objects_are_converted_in_one_review_keeping_their_metadata() {
    let s = stub(answer);
    let out = convert(
        &s,
        &hook(),
        vec![obj("v1", "a"), obj("v2", "b"), obj("v1", "c")],
        "stable.example.com/v2",
    )
    .unwrap();
    assert_eq!(*s.1.lock().unwrap(), 1, "one review for the list");
    assert_eq!(out[0]["spec"], json!({"schedule": "* * * * *"}));
    assert_eq!(out[1], obj("v2", "b"), "already in v2: not sent");
    // Labels come from the webhook; everything else of metadata is the original's.
    assert_eq!(
        out[2]["metadata"]["labels"],
        json!({"a": "1", "converted": "yes"})
    );
    assert_eq!(out[2]["metadata"]["resourceVersion"], "7");
}

#[test]
fn nothing_to_convert_calls_nothing() {
    let s = stub(answer);
    let out = convert(&s, &hook(), vec![obj("v2", "a")], "stable.example.com/v2").unwrap();
    assert_eq!(out, vec![obj("v2", "a")]);
    assert_eq!(*s.1.lock().unwrap(), 0);
}

fn error_of(f: impl Fn(&Value) -> Value + Send + Sync) -> String {
    convert(
        &stub(f),
        &hook(),
        vec![obj("v1", "a")],
        "stable.example.com/v2",
    )
    .unwrap_err()
}

#[test]
fn bad_answers_are_refused_with_kubes_words() {
    let gvk = "conversion webhook for stable.example.com/v1, Kind=CronTab";
    // The request's uid is random: the message names it, then what came back.
    let wrong_uid = error_of(|r| {
        let mut a = answer(r);
        a["response"]["uid"] = json!("other");
        a
    });
    assert!(
        wrong_uid.starts_with(&format!("{gvk} failed: expected response.uid=\""))
            && wrong_uid.ends_with("\", got \"other\""),
        "{wrong_uid}"
    );
    assert_eq!(
        error_of(
            |r| json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": r["uid"], "result": {"status": "Failure", "message": "no v2 for you"}}})
        ),
        format!("{gvk} failed: no v2 for you")
    );
    assert_eq!(
        error_of(
            |r| json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": r["uid"], "convertedObjects": [], "result": {"status": "Success"}}})
        ),
        format!("{gvk} returned 0 objects, expected 1")
    );
    assert_eq!(
        error_of(|r| {
            let mut a = answer(r);
            a["response"]["convertedObjects"][0]["apiVersion"] = json!("stable.example.com/v3");
            a
        }),
        format!(
            "{gvk} returned invalid converted object at index 0: invalid groupVersion \
             (expected stable.example.com/v2, received stable.example.com/v3)"
        )
    );
    assert_eq!(
        error_of(|r| {
            let mut a = answer(r);
            a["response"]["convertedObjects"][0]["metadata"]["name"] = json!("b");
            a
        }),
        format!(
            "{gvk} returned invalid converted object at index 0: must have the same name: a != b"
        )
    );
    assert_eq!(
        error_of(|r| {
            let mut a = answer(r);
            a["response"]["convertedObjects"][0]["metadata"]["labels"]["x"] = json!(1);
            a
        }),
        format!(
            "{gvk} returned invalid metadata in object at index 0: metadata.labels[x] must be \
             a string, but is int64 in converted object"
        )
    );
    assert_eq!(
        error_of(|_| json!({"apiVersion": "v1", "kind": "Status"})),
        format!(
            "{gvk} failed: expected webhook response of apiextensions.k8s.io/v1, \
             Kind=ConversionReview, got v1, Kind=Status"
        )
    );
}
