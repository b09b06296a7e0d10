//! An operator written the way kube-rs users write one: a `#[derive(CustomResource)]`
//! kind, its CRD generated from the Rust type, a `Controller` that owns Deployments and a
//! finalizer that cleans up. It runs against two apiservers over the backend given (a
//! Flotilla kvstore or etcd), the operator on one replica and the test's client on the
//! other.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{finalizer, Event};
use kube::runtime::{conditions, wait::await_condition, watcher};
use kube::{CustomResource, CustomResourceExt, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::common::k8s::{kubectl_ok, Apiservers, Backend};
use crate::common::wait_for;

const FINALIZER: &str = "webapps.demo.flotilla.dev/cleanup";
const MANAGER: &str = "webapp-operator";

/// A web application: the operator runs it as a Deployment of `replicas` pods.
#[derive(CustomResource, Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "demo.flotilla.dev",
    version = "v1",
    kind = "WebApp",
    namespaced,
    status = "WebAppStatus",
    shortname = "wa",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.image"),
    printcolumn(
        name = "Deployment",
        type_ = "string",
        json_path = ".status.deployment"
    ),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas"
    ),
    selectable = ".spec.image"
)]
#[serde(rename_all = "camelCase")]
pub struct WebAppSpec {
    image: String,
    replicas: i32,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebAppStatus {
    deployment: String,
    replicas: i32,
    observed_generation: i64,
}

struct Ctx {
    client: kube::Client,
}

#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("the object has no namespace")]
    NoNamespace,
}

fn deployment_for(app: &WebApp) -> Deployment {
    let name = app.name_any();
    let owner = app
        .controller_owner_ref(&())
        .expect("a stored object has a uid");
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": MANAGER},
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": app.spec.replicas,
            "selector": {"matchLabels": {"webapp": name}},
            "template": {
                "metadata": {"labels": {"webapp": name}},
                "spec": {"containers": [{"name": "web", "image": app.spec.image}]}
            }
        }
    }))
    .expect("a valid Deployment")
}

async fn apply(app: Arc<WebApp>, ctx: &Ctx) -> Result<Action, Failed> {
    let ns = app.namespace().ok_or(Failed::NoNamespace)?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PatchParams::apply(MANAGER).force();
    deployments
        .patch(
            &app.name_any(),
            &params,
            &Patch::Apply(deployment_for(&app)),
        )
        .await?;
    let status = serde_json::json!({
        "apiVersion": WebApp::api_version(&()),
        "kind": WebApp::kind(&()),
        "status": {
            "deployment": app.name_any(),
            "replicas": app.spec.replicas,
            "observedGeneration": app.metadata.generation.unwrap_or_default(),
        }
    });
    let apps: Api<WebApp> = Api::namespaced(ctx.client.clone(), &ns);
    apps.patch_status(&app.name_any(), &params, &Patch::Apply(status))
        .await?;
    Ok(Action::requeue(Duration::from_secs(300)))
}

async fn cleanup(app: Arc<WebApp>, ctx: &Ctx) -> Result<Action, Failed> {
    let ns = app.namespace().ok_or(Failed::NoNamespace)?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &ns);
    match deployments
        .delete(&app.name_any(), &DeleteParams::default())
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

async fn reconcile(
    app: Arc<WebApp>,
    ctx: Arc<Ctx>,
) -> Result<Action, kube::runtime::finalizer::Error<Failed>> {
    let ns = app.namespace().unwrap_or_default();
    let apps: Api<WebApp> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&apps, FINALIZER, app, |event| async {
        match event {
            Event::Apply(app) => apply(app, &ctx).await,
            Event::Cleanup(app) => cleanup(app, &ctx).await,
        }
    })
    .await
}

fn error_policy(
    _app: Arc<WebApp>,
    _err: &kube::runtime::finalizer::Error<Failed>,
    _ctx: Arc<Ctx>,
) -> Action {
    Action::requeue(Duration::from_millis(200))
}

/// Runs the operator until the returned task is aborted.
fn start_operator(client: kube::Client) -> tokio::task::JoinHandle<()> {
    let apps: Api<WebApp> = Api::all(client.clone());
    let deployments: Api<Deployment> = Api::all(client.clone());
    let ctx = Arc::new(Ctx { client });
    tokio::spawn(async move {
        Controller::new(apps, watcher::Config::default())
            .owns(deployments, watcher::Config::default())
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {})
            .await;
    })
}

async fn deployment_replicas(api: &Api<Deployment>, name: &str) -> Option<i32> {
    api.get_opt(name).await.ok()??.spec?.replicas
}

pub async fn operator_suite(backend: Backend) {
    let a = Apiservers::start(2, &backend.urls()).await;
    let client = a.client(1).await;

    // The CRD as kube-rs generates it from the Rust type, established before use.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = WebApp::crd();
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("the generated CRD is accepted");
    let name = crd.name_any();
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(Duration::from_secs(10), established)
        .await
        .expect("the CRD established in time")
        .expect("a watch of the CRD");

    let operator = start_operator(a.client(0).await);
    let apps: Api<WebApp> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let app = WebApp::new(
        "shop",
        WebAppSpec {
            image: "nginx:1.27".into(),
            replicas: 2,
        },
    );
    apps.create(&PostParams::default(), &app).await.unwrap();
    let (apps, deployments) = (&apps, &deployments);

    // The operator adds its finalizer, creates the Deployment and reports status.
    let made = wait_for(
        Duration::from_secs(20),
        "the operator's Deployment and status",
        || async move {
            let d = deployments.get_opt("shop").await.ok()??;
            let app = apps.get("shop").await.ok()?;
            let st = app.status.as_ref()?;
            (st.observed_generation == app.metadata.generation? && st.replicas == 2)
                .then_some((d, app))
        },
    )
    .await;
    let (d, app) = made;
    assert_eq!(d.spec.as_ref().unwrap().replicas, Some(2));
    let owner = &d.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("WebApp", app.metadata.uid.as_deref().unwrap(), Some(true))
    );
    assert_eq!(app.finalizers(), [FINALIZER]);
    let table = kubectl_ok(a.kubeconfig(1), &["get", "wa", "shop", "--no-headers"]);
    assert!(
        table.split_whitespace().collect::<Vec<_>>()[..3] == ["shop", "nginx:1.27", "shop"],
        "{table}"
    );

    // The CRD's selectable field works as a field selector; other fields are refused.
    let pick = |sel: &str| {
        kubectl_ok(
            a.kubeconfig(0),
            &["get", "wa", "--field-selector", sel, "-o", "name"],
        )
    };
    assert_eq!(
        pick("spec.image=nginx:1.27").trim(),
        "webapp.demo.flotilla.dev/shop"
    );
    assert_eq!(pick("spec.image!=nginx:1.27").trim(), "");
    let bad = crate::common::k8s::kubectl(
        a.kubeconfig(0),
        &["get", "wa", "--field-selector", "spec.replicas=2"],
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("field label not supported: spec.replicas"),
        "{bad:?}"
    );

    // A spec change reaches the Deployment; so does `kubectl scale` on the custom resource.
    apps.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(20), "3 replicas", || async move {
        (deployment_replicas(deployments, "shop").await? == 3).then_some(())
    })
    .await;
    kubectl_ok(a.kubeconfig(0), &["scale", "webapp/shop", "--replicas=4"]);
    wait_for(Duration::from_secs(20), "4 replicas", || async move {
        (deployment_replicas(deployments, "shop").await? == 4).then_some(())
    })
    .await;

    // An owned Deployment deleted by someone else comes back (the controller watches it).
    let uid = &deployments.get("shop").await.unwrap().metadata.uid;
    deployments
        .delete("shop", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(20),
        "the Deployment recreated",
        || async move {
            let d = deployments.get_opt("shop").await.ok()??;
            (d.metadata.uid != *uid && d.metadata.deletion_timestamp.is_none()).then_some(())
        },
    )
    .await;

    // Deleting the WebApp runs the finalizer's cleanup: the Deployment goes, then the app.
    apps.delete("shop", &DeleteParams::default()).await.unwrap();
    wait_for(
        Duration::from_secs(20),
        "the app and its Deployment gone",
        || async move {
            let app = apps.get_opt("shop").await.ok()?;
            let d = deployments.get_opt("shop").await.ok()?;
            (app.is_none() && d.is_none()).then_some(())
        },
    )
    .await;
    operator.abort();
}
