//! What one container attempt is started with: the ConfigMaps and Secrets it names
//! (fetched from the apiserver), its environment and command (`env.rs`), its volumes and
//! mounts (`volumes.rs`), its effective securityContext (`security.rs`), limits and log
//! path; with the Docker runtime also the pod's `/etc/resolv.conf` and `/etc/hosts`
//! (`dns.rs`), files in the pod's directory mounted read-only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use component_base::events::{object_ref, EventType};
use k8s_openapi::api::core::v1::ObjectReference;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret,
};
use kube::api::Api;

use crate::env;
use crate::node_state::{container_hash, pod_dir_name, pod_ref, Shared};
use crate::runtime::{ContainerConfig, Mount, PullPolicy, SandboxStatus, Seccomp};
use crate::{dns, security, volumes};

/// The pod's resolv.conf and hosts file in its directory (a dot: no container's directory
/// is named so).
pub const RESOLV_CONF: &str = "resolv.conf";
pub const HOSTS: &str = "etc.hosts";

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
    let mut src = fetch_sources(shared, pod, cm_names, secret_names).await?;
    src.claims = fetch_claims(shared, pod).await?;
    let pr = pod_ref(pod);
    let pod_dir = shared.pods_dir.join(pod_dir_name(&pr));
    let vols = volumes::prepare(pod, &pod_dir, &src, shared.memory_volumes)?;
    let mut mounts = volumes::mounts(pod, c, &vols)?;
    if shared.pod_etc_files {
        mounts.extend(etc_mounts(shared, pod, &pod_dir, sandbox, &mounts)?);
    }
    let pod_ip = sandbox.ip.clone().unwrap_or_default();
    let fields = env::Fields {
        pod_ip: &pod_ip,
        host_ip: &shared.host_ip,
        node_name: &shared.node_name,
    };
    let services = crate::services::all(&shared.services).await?;
    let enable_links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let service_env = crate::service_env::vars(
        services.iter().map(|s| s.as_ref()),
        &pr.namespace,
        enable_links,
    );
    let user_env = env::resolve(pod, c, &fields, &src, &service_env)?;
    let mut envs: Vec<(String, String)> = Vec::new();
    if !user_env.iter().any(|(k, _)| k == "PATH") {
        envs.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    envs.push(("HOSTNAME".into(), hostname_and_domain(shared, pod).0));
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

/// The pod's hostname and domain (`dns.rs`): the sandbox's hostname is the first.
pub fn hostname_and_domain(shared: &Shared, pod: &Pod) -> (String, String) {
    let spec = pod.spec.clone().unwrap_or_default();
    let pr = pod_ref(pod);
    dns::hostname_and_domain(&pr.name, &pr.namespace, &spec, &shared.dns.cluster_domain)
}

/// Computes the pod's resolv.conf (`dns.rs`) from the node's settings and `--resolv-conf`
/// as it is now, writes it into the pod's directory (0644: containers of any user read
/// it) and records the kubelet's warnings (MissingClusterDNS, DNSConfigForming). Done when
/// the sandbox is created, as the kubelet, and again for a container when the file is
/// missing.
pub fn write_resolv_conf(shared: &Shared, pod: &Pod, pod_dir: &Path) -> Result<(), String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let host = if shared.dns.resolv_conf.is_empty() {
        String::new()
    } else {
        std::fs::read_to_string(&shared.dns.resolv_conf)
            .map_err(|e| format!("reading --resolv-conf {}: {e}", shared.dns.resolv_conf))?
    };
    let node_ips: Vec<std::net::IpAddr> = shared.host_ip.parse().into_iter().collect();
    let (conf, warnings) = dns::pod_dns(&spec, &ns, &shared.dns, &host, &node_ips);
    for w in &warnings {
        tracing::warn!(pod = %format!("{ns}/{}", pod.metadata.name.as_deref().unwrap_or("")), reason = w.reason, "{}", w.message);
        if w.node {
            let node = ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(shared.node_name.clone()),
                uid: Some(shared.node_name.clone()),
                ..Default::default()
            };
            shared
                .recorder
                .record(&node, EventType::Warning, w.reason, &w.message);
        }
        let msg = if w.node {
            format!(
                "pod: \"{}_{ns}({})\". {}",
                pod.metadata.name.as_deref().unwrap_or(""),
                pod.metadata.uid.as_deref().unwrap_or(""),
                w.message
            )
        } else {
            w.message.clone()
        };
        shared
            .recorder
            .record(&object_ref(pod), EventType::Warning, w.reason, &msg);
    }
    write_file(&pod_dir.join(RESOLV_CONF), &conf.render())
}

/// Writes `text` to `path` (when it differs), 0644, making the directory.
fn write_file(path: &Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::read_to_string(path).is_ok_and(|t| t == text) {
        return Ok(());
    }
    let r = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(path, text))
        .and_then(|()| std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)));
    r.map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The pod's `/etc/resolv.conf` and, for a pod with an IP not on the host's network, the
/// kubelet's `/etc/hosts` (pod IP and names, hostAliases), unless the container mounts
/// something there itself.
fn etc_mounts(
    shared: &Shared,
    pod: &Pod,
    pod_dir: &Path,
    sandbox: &SandboxStatus,
    own: &[Mount],
) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    let mounted = |p: &str| {
        own.iter()
            .any(|m| m.container_path.trim_end_matches('/') == p)
    };
    let resolv = pod_dir.join(RESOLV_CONF);
    if !mounted("/etc/resolv.conf") {
        if !resolv.exists() {
            write_resolv_conf(shared, pod, pod_dir)?;
        }
        out.push(Mount {
            host_path: resolv,
            container_path: "/etc/resolv.conf".into(),
            read_only: true,
        });
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let ip = sandbox.ip.clone().filter(|i| !i.is_empty());
    if let (Some(ip), false, false) = (
        ip,
        spec.host_network.unwrap_or(false),
        mounted("/etc/hosts"),
    ) {
        let (host, domain) = hostname_and_domain(shared, pod);
        let path = pod_dir.join(HOSTS);
        write_file(&path, &dns::hosts_file(&[ip], &host, &domain, &spec))?;
        out.push(Mount {
            host_path: path,
            container_path: "/etc/hosts".into(),
            read_only: true,
        });
    }
    Ok(out)
}

/// Where each PersistentVolumeClaim of the pod lives on this node: the hostPath or local
/// path of the volume it is bound to. An unbound claim, or a volume of another type, is
/// an error the pod waits out (as the kubelet waits for its volumes).
async fn fetch_claims(
    shared: &Shared,
    pod: &Pod,
) -> Result<BTreeMap<String, (std::path::PathBuf, bool)>, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), &ns);
    let volumes: Api<PersistentVolume> = Api::all(shared.client.clone());
    let mut out = BTreeMap::new();
    for name in volumes::claims(pod) {
        let claim = match claims.get_opt(&name).await {
            Ok(Some(c)) => c,
            Ok(None) => return Err(format!("persistentvolumeclaim {name:?} not found")),
            Err(e) => return Err(format!("reading persistentvolumeclaim {name:?}: {e}")),
        };
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        let Some(vname) = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| bound && !v.is_empty())
        else {
            return Err(format!("persistentvolumeclaim {name:?} is not bound"));
        };
        let pv = volumes
            .get(&vname)
            .await
            .map_err(|e| format!("reading persistentvolume {vname:?}: {e}"))?;
        let spec = pv.spec.unwrap_or_default();
        let path = match (&spec.host_path, &spec.local) {
            (Some(h), _) => (
                std::path::PathBuf::from(&h.path),
                h.type_.as_deref() == Some("DirectoryOrCreate"),
            ),
            (None, Some(l)) => (std::path::PathBuf::from(&l.path), false),
            _ => {
                return Err(format!(
                    "persistentvolume {vname:?}: only hostPath and local volumes are supported by this agent"
                ))
            }
        };
        out.insert(name, path);
    }
    Ok(out)
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
