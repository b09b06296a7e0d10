//! A Kubernetes API client bound to one apiserver, as a Jepsen client process is: no
//! failover inside, and every error classified as certainly-not-applied or
//! outcome-unknown. The objects workload's registers are ConfigMaps holding one number.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{DeleteParams, GetParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};

use crate::client::OpError;
use crate::cluster::ApiServer;
use crate::history::Listed;

/// The namespace the workload's objects live in.
const NAMESPACE: &str = "default";
/// The label key every object of a workload carries, with the workload's name as the value
/// (its lists and watches select on it).
pub const LABEL: &str = "jepsen";

/// The admin kubeconfig of the cluster pointed at one apiserver.
pub async fn config(server: &ApiServer, timeout: Duration) -> anyhow::Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(&server.kubeconfig)
        .with_context(|| format!("reading {}", server.kubeconfig.display()))?;
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    cfg.cluster_url = server.url.parse()?;
    // kube-rs retries 429, 503 and 504 by itself, POST included: a create whose first
    // attempt was applied (503 after a leader failure) would come back 409 AlreadyExists,
    // which the history would record as certainly not applied. Every outcome is the
    // harness's to classify.
    cfg.default_retry = false;
    cfg.connect_timeout = Some(Duration::from_millis(500));
    cfg.read_timeout = Some(timeout);
    cfg.write_timeout = Some(timeout);
    Ok(cfg)
}

/// Runs `f` within `timeout`; a timeout is an unknown outcome.
async fn timed<T>(
    timeout: Duration,
    f: impl Future<Output = Result<T, kube::Error>>,
) -> Result<Result<T, kube::Error>, OpError> {
    tokio::time::timeout(timeout, f)
        .await
        .map_err(|_| OpError::Unknown(format!("no answer within {timeout:?}")))
}

#[derive(Clone)]
pub struct Api {
    cms: kube::Api<ConfigMap>,
    timeout: Duration,
    /// The value of the workload's label on its objects.
    label: &'static str,
    /// Reads with resourceVersion "0" (any version, from the apiserver's cache) instead of
    /// consistent ones: stale reads the checker must catch.
    any: bool,
}

/// Whether the request never left: the connection (TCP and TLS) was not established.
fn not_sent(e: &kube::Error) -> bool {
    let mut text = e.to_string();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        text.push_str(&s.to_string());
        src = s.source();
    }
    text.contains("client error (Connect)")
        || text.contains("Connection refused")
        || text.contains("tcp connect error")
}

fn classify(e: kube::Error) -> OpError {
    match &e {
        // Refused before it was stored: invalid, unauthorized, not found, conflict, gone,
        // too many requests.
        kube::Error::Api(s) if (400..500).contains(&s.code) => {
            OpError::Fail(format!("{} {}: {}", s.code, s.reason, s.message))
        }
        // 500, 503, 504: the kvstore may have applied the write, or may yet.
        kube::Error::Api(s) => OpError::Unknown(format!("{} {}: {}", s.code, s.reason, s.message)),
        _ if not_sent(&e) => OpError::Fail(e.to_string()),
        _ => OpError::Unknown(e.to_string()),
    }
}

fn code(e: &kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        _ => 0,
    }
}

fn value(cm: &ConfigMap) -> Result<Option<u64>, OpError> {
    match cm.data.as_ref().and_then(|d| d.get("v")) {
        None => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| OpError::Fail(format!("unparseable value {v:?}"))),
    }
}

fn rv(cm: &ConfigMap) -> Result<u64, OpError> {
    rv_of(&cm.metadata)
}

fn object(label: &str, name: &str, v: u64, rv: Option<u64>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(NAMESPACE.to_string()),
            labels: Some(BTreeMap::from([(LABEL.into(), label.into())])),
            resource_version: rv.map(|r| r.to_string()),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("v".to_string(), v.to_string())])),
        ..Default::default()
    }
}

impl Api {
    /// The objects workload's ConfigMaps (label `jepsen=objects`).
    pub fn new(cfg: kube::Config, timeout: Duration, any: bool) -> anyhow::Result<Api> {
        Api::labelled(cfg, timeout, any, "objects")
    }

    /// The ConfigMaps labelled `jepsen=<label>`.
    pub fn labelled(
        cfg: kube::Config,
        timeout: Duration,
        any: bool,
        label: &'static str,
    ) -> anyhow::Result<Api> {
        let client = kube::Client::try_from(cfg)?;
        Ok(Api {
            cms: kube::Api::namespaced(client, NAMESPACE),
            timeout,
            label,
            any,
        })
    }

    async fn timed<T>(
        &self,
        f: impl Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, OpError> {
        timed(self.timeout, f).await
    }

    /// A consistent read (unless `any`): the value and resourceVersion, None when not
    /// found.
    pub async fn get(&self, name: &str) -> Result<Option<(Option<u64>, u64)>, OpError> {
        let gp = if self.any {
            GetParams::any()
        } else {
            GetParams::default()
        };
        match self.timed(self.cms.get_with(name, &gp)).await? {
            Ok(cm) => Ok(Some((value(&cm)?, rv(&cm)?))),
            Err(e) if code(&e) == 404 => Ok(None),
            Err(e) => Err(classify(e)),
        }
    }

    /// Sets the value whatever the object holds: PUT without a resourceVersion, or POST
    /// when there is no object. Returns the new resourceVersion.
    pub async fn put(&self, name: &str, v: u64) -> Result<u64, OpError> {
        let pp = PostParams::default();
        match self
            .timed(
                self.cms
                    .replace(name, &pp, &object(self.label, name, v, None)),
            )
            .await?
        {
            Ok(cm) => rv(&cm),
            // Not found is certain: nothing was written; create it instead.
            Err(e) if code(&e) == 404 => self.create(name, v).await,
            Err(e) => Err(classify(e)),
        }
    }

    /// PUT with `rv` as the precondition; 409 when the object changed since.
    pub async fn update(&self, name: &str, rv_read: u64, v: u64) -> Result<u64, OpError> {
        let pp = PostParams::default();
        match self
            .timed(
                self.cms
                    .replace(name, &pp, &object(self.label, name, v, Some(rv_read))),
            )
            .await?
        {
            Ok(cm) => rv(&cm),
            Err(e) => Err(classify(e)),
        }
    }

    /// POST; 409 AlreadyExists when there is an object.
    pub async fn create(&self, name: &str, v: u64) -> Result<u64, OpError> {
        let pp = PostParams::default();
        match self
            .timed(self.cms.create(&pp, &object(self.label, name, v, None)))
            .await?
        {
            Ok(cm) => rv(&cm),
            Err(e) => Err(classify(e)),
        }
    }

    /// DELETE; 404 when there is no object.
    pub async fn delete(&self, name: &str) -> Result<(), OpError> {
        match self
            .timed(self.cms.delete(name, &DeleteParams::default()))
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    /// A consistent list (unless `any`) of the workload's objects.
    pub async fn list(&self) -> Result<Vec<Listed>, OpError> {
        let mut lp = ListParams::default().labels(&format!("{LABEL}={}", self.label));
        if self.any {
            lp = lp.match_any();
        }
        let list = match self.timed(self.cms.list(&lp)).await? {
            Ok(l) => l,
            Err(e) => return Err(classify(e)),
        };
        list.items
            .iter()
            .map(|cm| {
                Ok(Listed {
                    key: cm.metadata.name.clone().unwrap_or_default(),
                    value: value(cm)?,
                    rv: rv(cm)?,
                })
            })
            .collect()
    }
}

/// What a Deployment's status says of its rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rollout {
    /// spec.replicas
    pub desired: u32,
    pub rv: u64,
    /// The controller has seen the latest spec, and every replica is updated, ready and
    /// available, with none left over.
    pub done: bool,
}

/// The pods workload's Deployments, in the same namespace.
#[derive(Clone)]
pub struct Deployments {
    api: kube::Api<Deployment>,
    timeout: Duration,
}

impl Deployments {
    pub fn new(cfg: kube::Config, timeout: Duration) -> anyhow::Result<Deployments> {
        let client = kube::Client::try_from(cfg)?;
        Ok(Deployments {
            api: kube::Api::namespaced(client, NAMESPACE),
            timeout,
        })
    }

    /// Creates Deployment `name` of `replicas` pods that sleep, each stopped within a
    /// second of its deletion; one that exists already is left as it is.
    pub async fn create(&self, name: &str, replicas: u32) -> Result<(), OpError> {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {LABEL: "pods"}},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name, LABEL: "pods"}},
                    "spec": {
                        "terminationGracePeriodSeconds": 1,
                        "containers": [{
                            "name": "sleep",
                            "image": "busybox",
                            "command": ["sleep", "3600"],
                        }],
                    },
                },
            },
        }))
        .map_err(|e| OpError::Fail(e.to_string()))?;
        match timed(self.timeout, self.api.create(&PostParams::default(), &d)).await? {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == 409 => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    /// Sets spec.replicas through the scale subresource (a merge patch, as `kubectl scale`
    /// does without `--resource-version`).
    pub async fn scale(&self, name: &str, replicas: u32) -> Result<(), OpError> {
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        match timed(
            self.timeout,
            self.api
                .patch_scale(name, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await?
        {
            Ok(_) => Ok(()),
            Err(e) => Err(classify(e)),
        }
    }

    /// A consistent read of the Deployment's desired replicas and rollout.
    pub async fn rollout(&self, name: &str) -> Result<Rollout, OpError> {
        let d = match timed(self.timeout, self.api.get(name)).await? {
            Ok(d) => d,
            Err(e) => return Err(classify(e)),
        };
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        let n = |v: Option<i32>| v.unwrap_or(0);
        let done = st.observed_generation >= d.metadata.generation
            && n(st.replicas) == desired
            && n(st.updated_replicas) == desired
            && n(st.ready_replicas) == desired
            && n(st.available_replicas) == desired;
        Ok(Rollout {
            desired: u32::try_from(desired)
                .map_err(|_| OpError::Fail(format!("spec.replicas is {desired}")))?,
            rv: rv_of(&d.metadata)?,
            done,
        })
    }
}

fn rv_of(m: &ObjectMeta) -> Result<u64, OpError> {
    let rv = m.resource_version.as_deref().unwrap_or("");
    rv.parse()
        .map_err(|_| OpError::Fail(format!("resourceVersion {rv:?} is not a number")))
}

/// The value of counter `name` (no labels) on the apiserver's `/metrics`; `None` when the
/// apiserver does not answer or does not export it.
pub async fn counter(cfg: kube::Config, name: &str) -> Option<u64> {
    let client = kube::Client::try_from(cfg).ok()?;
    let req = http::Request::get("/metrics").body(Vec::new()).ok()?;
    let text = tokio::time::timeout(Duration::from_secs(5), client.request_text(req))
        .await
        .ok()?
        .ok()?;
    metric_value(&text, name)
}

/// `name`'s value in a Prometheus text exposition.
fn metric_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name)
            .then(|| v.trim().parse::<f64>().ok())?
            .map(|v| v as u64)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_value_reads_an_unlabelled_counter() {
        let text = "# HELP x_total X.\n# TYPE x_total counter\nx_total_other 9\nx_total 5\n";
        assert_eq!(super::metric_value(text, "x_total"), Some(5));
        assert_eq!(super::metric_value(text, "y_total"), None);
    }
}
