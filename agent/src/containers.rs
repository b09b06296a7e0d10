//! What one container attempt is started with: the ConfigMaps and Secrets it names
//! (fetched from the apiserver), its environment and command (`env.rs`), its volumes and
//! mounts (`volumes.rs`), its effective securityContext (`security.rs`), limits and log
//! path.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::Api;

use crate::env;
use crate::node_state::{container_hash, pod_dir_name, pod_ref, Shared};
use crate::runtime::{ContainerConfig, PullPolicy, SandboxStatus, Seccomp};
use crate::{security, volumes};

/// The environment a process gets when the image gives none (Docker's default PATH).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Everything the runtime needs to start one attempt of container `c`: environment,
/// command, volumes and mounts (made on the host now), limits, log path. An error is the
/// message of a CreateContainerConfigError.
pub async fn config(
    shared: &Shared,
    pod: &Pod,
    c: &Container,
    init: bool,
    attempt: u32,
    sandbox: &SandboxStatus,
) -> Result<ContainerConfig, String> {
    let (mut cm_names, mut secret_names) = env::sources(c);
    let (vol_cms, vol_secrets) = volumes::sources(pod);
    cm_names.extend(vol_cms);
    secret_names.extend(vol_secrets);
    let src = fetch_sources(shared, pod, cm_names, secret_names).await?;
    let pr = pod_ref(pod);
    let pod_dir = shared.pods_dir.join(pod_dir_name(&pr));
    let vols = volumes::prepare(pod, &pod_dir, &src, shared.memory_volumes)?;
    let mounts = volumes::mounts(pod, c, &vols)?;
    let pod_ip = sandbox.ip.clone().unwrap_or_default();
    let fields = env::Fields {
        pod_ip: &pod_ip,
        host_ip: &shared.host_ip,
        node_name: &shared.node_name,
    };
    let user_env = env::resolve(pod, c, &fields, &src)?;
    let mut envs: Vec<(String, String)> = Vec::new();
    if !user_env.iter().any(|(k, _)| k == "PATH") {
        envs.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    envs.push((
        "HOSTNAME".into(),
        pod.metadata.name.clone().unwrap_or_default(),
    ));
    envs.extend(user_env.iter().cloned());
    let (command, args) = env::command(c, &user_env);
    let log_path = pod_dir
        .join(if init {
            format!("init-{}", c.name)
        } else {
            c.name.clone()
        })
        .join(format!("{attempt}.log"));
    let mut security = security::effective(pod, c);
    if let Seccomp::Localhost { name, profile } = &mut security.seccomp {
        // As the kubelet: `<root-dir>/seccomp/<localhostProfile>`.
        if !security::safe_profile_name(name) {
            return Err(format!("invalid localhost seccomp profile name {name:?}"));
        }
        let dir = shared.pods_dir.parent().unwrap_or(&shared.pods_dir);
        let path = dir.join("seccomp").join(&*name);
        *profile = std::fs::read_to_string(&path).map_err(|e| {
            format!(
                "failed to read localhost seccomp profile {}: {e}",
                path.display()
            )
        })?;
    }
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let limit = |k: &str| limits.and_then(|l| l.get(k)).map(|q| q.0.clone());
    Ok(ContainerConfig {
        pod: pr,
        name: c.name.clone(),
        attempt,
        init,
        hash: container_hash(c),
        image: c.image.clone().unwrap_or_default(),
        pull_policy: PullPolicy::parse(c.image_pull_policy.as_deref()),
        command,
        args,
        env: envs,
        working_dir: c.working_dir.clone(),
        mounts,
        cpu_limit_millis: limit("cpu").and_then(|q| flotilla_core::quantity::milli(&q)),
        memory_limit_bytes: limit("memory").and_then(|q| flotilla_core::quantity::units(&q)),
        log_path,
        security,
    })
}

/// The ConfigMaps and Secrets named, from the apiserver (a missing one is absent).
async fn fetch_sources(
    shared: &Shared,
    pod: &Pod,
    cm_names: BTreeSet<String>,
    secret_names: BTreeSet<String>,
) -> Result<env::Sources, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mut src = env::Sources::default();
    let cms: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &ns);
    for n in cm_names {
        match cms.get_opt(&n).await {
            Ok(Some(cm)) => {
                src.config_maps.insert(n, cm.data.unwrap_or_default());
            }
            Ok(None) => {}
            Err(e) => return Err(format!("reading configmap {n:?}: {e}")),
        }
    }
    let secrets: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
    for n in secret_names {
        match secrets.get_opt(&n).await {
            Ok(Some(s)) => {
                let mut data = BTreeMap::new();
                for (k, v) in s.data.unwrap_or_default() {
                    data.insert(k, v.0);
                }
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                src.secrets.insert(n, data);
            }
            Ok(None) => {}
            Err(e) => return Err(format!("reading secret {n:?}: {e}")),
        }
    }
    Ok(src)
}
