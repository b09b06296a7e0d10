//! Extension benchmark (issue 23): custom resources beside ConfigMaps, and what admission
//! webhooks cost per write. A 3-member kvstore and one apiserver on loopback, driven
//! through kube-rs with dynamic objects (the same client path for both kinds). Prints
//! markdown tables.
//!
//! `cargo bench --bench extensions` (EXT_BENCH_OBJECTS: objects of each kind, default
//! 10000; EXT_BENCH_CLIENTS: concurrent creators, default 16; EXT_BENCH_WEBHOOK_WRITES:
//! sequential creates per webhook row, default 300; EXT_BENCH_CONVERTED: objects of the
//! CRD whose second version a conversion webhook serves, default 1000).

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)]
mod common;
#[path = "lib/table.rs"]
mod table;

use std::time::{Duration, Instant};

use common::k8s::{Apiservers, Backend};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::{json, Value};
use table::{env, row};

/// Two versions, the second served by the test server's conversion webhook.
fn converted_crd(url: &str, ca: &Value) -> Value {
    let version = |name: &str, storage: bool| {
        json!({"name": name, "served": true, "storage": storage,
               "schema": {"openAPIV3Schema": {"type": "object",
                   "x-kubernetes-preserve-unknown-fields": true}}})
    };
    json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.bench.flotilla.dev"},
        "spec": {"group": "bench.flotilla.dev", "scope": "Namespaced",
            "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget", "listKind": "GadgetList"},
            "versions": [version("v1", true), version("v2", false)],
            "conversion": {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"],
                "clientConfig": {"url": url, "caBundle": ca}}}}})
}

const CRD: &str = r#"{
  "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "widgets.bench.flotilla.dev"},
  "spec": {"group": "bench.flotilla.dev", "scope": "Namespaced",
    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
    "versions": [{"name": "v1", "served": true, "storage": true,
      "schema": {"openAPIV3Schema": {"type": "object", "properties": {
        "spec": {"type": "object",
          "x-kubernetes-validations": [{"rule": "self.size <= 1000000", "message": "too big"}],
          "properties": {"size": {"type": "integer", "minimum": 0},
                         "color": {"type": "string", "enum": ["blue", "red"], "default": "blue"}}}}}}}]}}"#;

/// What one kind's objects look like.
struct Kind {
    name: &'static str,
    api: Api<DynamicObject>,
    ar: ApiResource,
    body: fn(usize) -> Value,
}

fn object(k: &Kind, name: String, i: usize) -> DynamicObject {
    let mut o = DynamicObject::new(&name, &k.ar);
    o.data = (k.body)(i);
    o
}

async fn creates(k: &Kind, prefix: &str, n: usize, clients: usize) -> (Duration, Vec<Duration>) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (api, ar, body, prefix) = (k.api.clone(), k.ar.clone(), k.body, prefix.to_string());
        tasks.push(tokio::spawn(async move {
            let k = Kind {
                name: "",
                api,
                ar,
                body,
            };
            let mut lat = Vec::new();
            for i in (c..n).step_by(clients) {
                let o = object(&k, format!("{prefix}-{i:06}"), i);
                let t = Instant::now();
                k.api
                    .create(&PostParams::default(), &o)
                    .await
                    .expect("create");
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    (started.elapsed(), all)
}

async fn lists(k: &Kind, lp: &ListParams, times: usize) -> (Duration, Vec<Duration>, usize) {
    let started = Instant::now();
    let mut lat = Vec::new();
    let mut items = 0;
    for _ in 0..times {
        let t = Instant::now();
        items = k.api.list(lp).await.expect("list").items.len();
        lat.push(t.elapsed());
    }
    (started.elapsed(), lat, items)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run());
}

async fn run() {
    let objects = env("EXT_BENCH_OBJECTS", 10_000);
    let clients = env("EXT_BENCH_CLIENTS", 16);
    let writes = env("EXT_BENCH_WEBHOOK_WRITES", 300);
    let backend = Backend::flotilla().await;
    let a = Apiservers::start(1, &backend.urls()).await;
    let client = a.client(0).await;

    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource {
            group: "apiextensions.k8s.io".into(),
            version: "v1".into(),
            api_version: "apiextensions.k8s.io/v1".into(),
            kind: "CustomResourceDefinition".into(),
            plural: "customresourcedefinitions".into(),
        },
    );
    let crd: DynamicObject = serde_json::from_str(CRD).expect("CRD JSON");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("CRD");
    let cm_ar = ApiResource {
        group: String::new(),
        version: "v1".into(),
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        plural: "configmaps".into(),
    };
    let widget_ar = ApiResource {
        group: "bench.flotilla.dev".into(),
        version: "v1".into(),
        api_version: "bench.flotilla.dev/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let kinds = [
        Kind {
            name: "configmaps",
            api: Api::namespaced_with(client.clone(), "default", &cm_ar),
            ar: cm_ar.clone(),
            body: |i| json!({"data": {"v": i.to_string()}}),
        },
        Kind {
            name: "widgets (CRD, schema + CEL rule)",
            api: Api::namespaced_with(client.clone(), "default", &widget_ar),
            ar: widget_ar,
            body: |i| json!({"spec": {"size": i}}),
        },
    ];
    // The CRD is served once established.
    for _ in 0..100 {
        if kinds[1]
            .api
            .list(&ListParams::default().limit(1))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    println!("\n### create: {objects} objects of each kind, {clients} clients\n");
    println!("| kind | creates | creates/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for (i, k) in kinds.iter().enumerate() {
        let (el, lat) = creates(k, &format!("o{i}"), objects, clients).await;
        row(k.name, objects, el, lat);
    }

    println!("\n### list all {objects} (consistent: watch cache after a linearizable read), 20 lists each\n");
    println!("| kind | lists | lists/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for k in &kinds {
        let (el, lat, items) = lists(k, &ListParams::default(), 20).await;
        assert!(items >= objects, "{} listed {items}", k.name);
        row(k.name, 20, el, lat);
    }

    // Webhook overhead: sequential creates of configmaps (one client), with no webhook
    // configured, then with one validating webhook, then with one mutating webhook too.
    let dir = tempfile::tempdir().expect("tempdir");
    let (port, ca, calls) = common::webhook::webhook_server(dir.path()).await;
    let ca = serde_json::to_value(k8s_openapi::ByteString(ca)).expect("caBundle");
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let config = |kind: &str, name: &str, hook: Value| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": kind,
            "metadata": {"name": name}, "webhooks": [hook]}))
        .expect("configuration")
    };
    let ar = |kind: &str, plural: &str| ApiResource {
        group: "admissionregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        plural: plural.into(),
    };
    let selector = json!({"objectSelector": {"matchLabels": {"bench": "webhook"}}});
    let steps: [(&str, Option<(&str, &str, &str)>); 3] = [
        ("no webhook configured", None),
        (
            "1 validating webhook",
            Some((
                "ValidatingWebhookConfiguration",
                "validatingwebhookconfigurations",
                "/validate",
            )),
        ),
        (
            "+ 1 mutating webhook (JSON patch)",
            Some((
                "MutatingWebhookConfiguration",
                "mutatingwebhookconfigurations",
                "/mutate",
            )),
        ),
    ];
    println!("\n### webhook admission: {writes} sequential configmap creates per row (1 client)\n");
    println!("| admission | creates | creates/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    let cms = &kinds[0];
    for (i, (name, add)) in steps.into_iter().enumerate() {
        if let Some((kind, plural, path)) = add {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar(kind, plural));
            let h = common::webhook::hook(
                &format!("bench{i}.flotilla.dev"),
                url(path),
                &ca,
                "configmaps",
                selector.clone(),
            );
            api.create(
                &PostParams::default(),
                &config(kind, &format!("bench{i}"), h),
            )
            .await
            .expect("configuration");
            // In effect once the apiserver's cache has it: probe until the new webhook is
            // called (the count grows past the i - 1 webhooks already in place).
            let count = || calls.load(std::sync::atomic::Ordering::SeqCst);
            let before = count();
            for p in 0..200 {
                let mut o = object(cms, format!("probe{i}-{p}"), p);
                o.metadata.labels = Some([("bench".to_string(), "webhook".to_string())].into());
                cms.api
                    .create(&PostParams::default(), &o)
                    .await
                    .expect("probe");
                if count() > before + (p + 1) * (i - 1) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let started = Instant::now();
        let mut lat = Vec::new();
        for j in 0..writes {
            let mut o = object(cms, format!("w{i}-{j:05}"), j);
            o.metadata.labels = Some([("bench".to_string(), "webhook".to_string())].into());
            let t = Instant::now();
            cms.api
                .create(&PostParams::default(), &o)
                .await
                .expect("create");
            lat.push(t.elapsed());
        }
        row(name, writes, started.elapsed(), lat);
    }

    // Conversion: lists and gets of a version a conversion webhook serves, beside the
    // storage version (no call).
    let converted = env("EXT_BENCH_CONVERTED", 1_000);
    let crd: DynamicObject =
        serde_json::from_value(converted_crd(&url("/convert"), &ca)).expect("CRD");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("converted CRD");
    let gadget = |version: &str| ApiResource {
        group: "bench.flotilla.dev".into(),
        version: version.into(),
        api_version: format!("bench.flotilla.dev/{version}"),
        kind: "Gadget".into(),
        plural: "gadgets".into(),
    };
    let versions = [
        ("v1 (storage)", gadget("v1")),
        ("v2 (webhook)", gadget("v2")),
    ];
    let gadgets: Vec<Kind> = versions
        .iter()
        .map(|(name, ar)| Kind {
            name: *name,
            api: Api::namespaced_with(client.clone(), "default", ar),
            ar: ar.clone(),
            body: |i| json!({"spec": {"cronSpec": format!("*/{} * * * *", i % 59 + 1)}}),
        })
        .collect();
    for _ in 0..100 {
        if gadgets[1]
            .api
            .list(&ListParams::default().limit(1))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    creates(&gadgets[0], "g", converted, clients).await;
    println!(
        "\n### conversion webhook: list all {converted} (one review per list), 20 lists each\n"
    );
    println!("| version | lists | lists/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for k in &gadgets {
        let (el, lat, items) = lists(k, &ListParams::default(), 20).await;
        assert!(items >= converted, "{} listed {items}", k.name);
        row(k.name, 20, el, lat);
    }
    println!("\n### conversion webhook: {writes} sequential gets of one object\n");
    println!("| version | gets | gets/s | p50 ms | p90 ms | p99 ms | max ms |");
    println!("|---|---|---|---|---|---|---|");
    for k in &gadgets {
        let started = Instant::now();
        let mut lat = Vec::new();
        for j in 0..writes {
            let t = Instant::now();
            k.api
                .get(&format!("g-{:06}", j % converted.max(1)))
                .await
                .expect("get");
            lat.push(t.elapsed());
        }
        row(k.name, writes, started.elapsed(), lat);
    }
}
