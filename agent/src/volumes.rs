//! Pod volumes on the host, as the kubelet lays them out under the pod's directory
//! (`volumes/kubernetes.io~empty-dir/<name>`, `~configmap`, `~secret`), and the bind
//! mounts of a container's volumeMounts. emptyDir, configMap, secret, hostPath and
//! persistentVolumeClaim (bound to a hostPath or local PersistentVolume) are supported;
//! ConfigMaps and Secrets are written again at every container start.
//! With `memory` (a real runtime), Secret volumes and `medium: Memory` emptyDirs are
//! tmpfs mounts (`tmpfs.rs`), as the kubelet makes them.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, KeyToPath, Pod};

use crate::env::Sources;
use crate::runtime::Mount;
use crate::tmpfs;

/// The PersistentVolumeClaims the pod's volumes name.
pub fn claims(pod: &Pod) -> Vec<String> {
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect()
}

/// The ConfigMaps and Secrets the pod's volumes name.
pub fn sources(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        if let Some(c) = &v.config_map {
            cms.push(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.push(s);
        }
    }
    (cms, secrets)
}

fn write_keys(
    dir: &Path,
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    mode: i32,
    what: &str,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("writing {what} volume {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(io)?;
    let files: Vec<(String, &Vec<u8>, i32)> = match items {
        Some(items) => items
            .iter()
            .map(|i| {
                data.get(&i.key)
                    .map(|v| (i.path.clone(), v, i.mode.unwrap_or(mode)))
                    .ok_or_else(|| format!("{what}: key {:?} not found", i.key))
            })
            .collect::<Result<_, _>>()?,
        None => data.iter().map(|(k, v)| (k.clone(), v, mode)).collect(),
    };
    for (path, bytes, mode) in files {
        if path.split('/').any(|p| p == "..") || path.starts_with('/') {
            return Err(format!("{what}: invalid path {path:?}"));
        }
        let f = dir.join(&path);
        if let Some(parent) = f.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&f, bytes).map_err(io)?;
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode((mode & 0o777) as u32))
            .map_err(io)?;
    }
    Ok(())
}

/// Makes every volume of the pod exist under `pod_dir`; returns each volume's host path.
/// `memory`: back Secret volumes and `medium: Memory` emptyDirs with tmpfs.
pub fn prepare(
    pod: &Pod,
    pod_dir: &Path,
    src: &Sources,
    memory: bool,
) -> Result<BTreeMap<String, PathBuf>, String> {
    let mut out = BTreeMap::new();
    let base = pod_dir.join("volumes");
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let io = |e: std::io::Error| format!("volume {:?}: {e}", v.name);
        let path = if let Some(e) = &v.empty_dir {
            let p = base.join("kubernetes.io~empty-dir").join(&v.name);
            if memory && e.medium.as_deref() == Some("Memory") {
                // As the kubelet: sizeLimit bounds the tmpfs; without one, tmpfs's own
                // default (half the node's memory).
                let size = e
                    .size_limit
                    .as_ref()
                    .and_then(|q| flotilla_core::quantity::parse(&q.0))
                    .filter(|b| b.is_finite() && *b >= 1.0)
                    .map(|b| b.min(u64::MAX as f64) as u64);
                tmpfs::ensure(&p, size)?;
            }
            std::fs::create_dir_all(&p).map_err(io)?;
            // World-writable as the kubelet makes it, so a container running as any
            // user (runAsUser) can write it.
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
            p
        } else if let Some(h) = &v.host_path {
            let p = PathBuf::from(&h.path);
            match h.type_.as_deref().unwrap_or("") {
                "" => {}
                "DirectoryOrCreate" => std::fs::create_dir_all(&p).map_err(io)?,
                "FileOrCreate" => {
                    if !p.exists() {
                        if let Some(parent) = p.parent() {
                            std::fs::create_dir_all(parent).map_err(io)?;
                        }
                        std::fs::write(&p, b"").map_err(io)?;
                    }
                }
                "Directory" if !p.is_dir() => {
                    return Err(format!(
                        "hostPath type check failed: {} is not a directory",
                        h.path
                    ))
                }
                "File" if !p.is_file() => {
                    return Err(format!(
                        "hostPath type check failed: {} is not a file",
                        h.path
                    ))
                }
                "Socket" | "CharDevice" | "BlockDevice" if !p.exists() => {
                    return Err(format!(
                        "hostPath type check failed: {} does not exist",
                        h.path
                    ))
                }
                _ => {}
            }
            p
        } else if let Some(c) = &v.config_map {
            let p = base.join("kubernetes.io~configmap").join(&v.name);
            match src.config_maps.get(&c.name) {
                Some(data) => {
                    let bytes = data
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
                        .collect();
                    write_keys(
                        &p,
                        &bytes,
                        c.items.as_ref(),
                        c.default_mode.unwrap_or(0o644),
                        "configMap",
                    )?;
                }
                None if c.optional == Some(true) => std::fs::create_dir_all(&p).map_err(io)?,
                None => return Err(format!("configmap \"{}\" not found", c.name)),
            }
            p
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().unwrap_or_default();
            let p = base.join("kubernetes.io~secret").join(&v.name);
            if memory {
                tmpfs::ensure(&p, Some(tmpfs::SECRET_SIZE))?;
            }
            match src.secrets.get(&name) {
                Some(data) => write_keys(
                    &p,
                    data,
                    s.items.as_ref(),
                    s.default_mode.unwrap_or(0o644),
                    "secret",
                )?,
                None if s.optional == Some(true) => std::fs::create_dir_all(&p).map_err(io)?,
                None => return Err(format!("secret \"{name}\" not found")),
            }
            p
        } else if let Some(c) = &v.persistent_volume_claim {
            // The claim's volume, bound and read before the pod's containers start.
            let (path, create) = src
                .claims
                .get(&c.claim_name)
                .ok_or_else(|| format!("persistentvolumeclaim {:?} is not bound", c.claim_name))?;
            if *create {
                std::fs::create_dir_all(path).map_err(io)?;
            } else if !path.is_dir() {
                return Err(format!(
                    "volume {:?}: the path {} of persistentvolumeclaim {:?} does not exist on this node",
                    v.name,
                    path.display(),
                    c.claim_name
                ));
            }
            path.clone()
        } else {
            return Err(format!(
                "volume {:?}: only emptyDir, hostPath, configMap, secret and persistentVolumeClaim volumes are supported by this agent",
                v.name
            ));
        };
        out.insert(v.name.clone(), path);
    }
    Ok(out)
}

/// The bind mounts of `c`'s volumeMounts.
pub fn mounts(
    pod: &Pod,
    c: &Container,
    volumes: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Mount>, String> {
    let read_only_kind = |name: &str| {
        pod.spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .find(|v| v.name == name)
            .is_some_and(|v| {
                v.config_map.is_some()
                    || v.secret.is_some()
                    || v.persistent_volume_claim
                        .as_ref()
                        .is_some_and(|c| c.read_only == Some(true))
            })
    };
    let mut out = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let host = volumes.get(&m.name).ok_or_else(|| {
            format!(
                "unable to find volume {:?} for mount {:?}",
                m.name, m.mount_path
            )
        })?;
        let host = match m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => {
                if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                    return Err(format!("invalid subPath {sub:?}"));
                }
                let p = host.join(sub);
                if !p.exists() {
                    std::fs::create_dir_all(&p).map_err(|e| format!("subPath {sub:?}: {e}"))?;
                }
                p
            }
            None => host.clone(),
        };
        out.push(Mount {
            host_path: host,
            container_path: m.mount_path.clone(),
            read_only: m.read_only == Some(true) || read_only_kind(&m.name),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_laid_out_and_mounted() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host/data");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "volumes": [
                    {"name": "scratch", "emptyDir": {}},
                    {"name": "cfg", "configMap": {"name": "cm", "items": [{"key": "a", "path": "conf/a.txt"}]}},
                    {"name": "creds", "secret": {"secretName": "s", "defaultMode": 0o400}},
                    {"name": "h", "hostPath": {"path": host.to_str().unwrap(), "type": "DirectoryOrCreate"}}
                ],
                "containers": [{"name": "c", "volumeMounts": [
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "cfg", "mountPath": "/etc/cfg"},
                    {"name": "creds", "mountPath": "/creds"},
                    {"name": "h", "mountPath": "/data", "subPath": "x"}
                ]}]
            }
        }))
        .unwrap();
        let mut src = Sources::default();
        src.config_maps
            .insert("cm".into(), [("a".to_string(), "A".to_string())].into());
        src.secrets
            .insert("s".into(), [("token".to_string(), b"t0k".to_vec())].into());
        let pod_dir = dir.path().join("pod");
        let vols = prepare(&pod, &pod_dir, &src, false).unwrap();
        assert!(vols["scratch"].is_dir());
        assert_eq!(
            std::fs::read_to_string(vols["cfg"].join("conf/a.txt")).unwrap(),
            "A"
        );
        let token = vols["creds"].join("token");
        assert_eq!(std::fs::read(&token).unwrap(), b"t0k");
        assert_eq!(
            std::fs::metadata(&token).unwrap().permissions().mode() & 0o777,
            0o400
        );
        assert!(host.is_dir());
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let m = mounts(&pod, c, &vols).unwrap();
        assert_eq!(m.len(), 4);
        assert!(!m[0].read_only && m[1].read_only && m[2].read_only);
        assert_eq!(m[3].host_path, vols["h"].join("x"));

        // A missing ConfigMap is an error unless optional.
        src.config_maps.clear();
        assert_eq!(
            prepare(&pod, &pod_dir, &src, false).unwrap_err(),
            "configmap \"cm\" not found"
        );
    }

    #[test]
    fn claims_mount_their_volumes_path() {
        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("pvc-1");
        let given = dir.path().join("local");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "data-p"}},
                    {"name": "ro", "persistentVolumeClaim": {"claimName": "shared", "readOnly": true}}
                ],
                "containers": [{"name": "c", "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "ro", "mountPath": "/shared"}
                ]}]
            }
        }))
        .unwrap();
        assert_eq!(claims(&pod), ["data-p", "shared"]);
        let mut src = Sources::default();
        src.claims.insert("data-p".into(), (made.clone(), true));
        src.claims.insert("shared".into(), (given.clone(), false));
        // A local volume's path must exist; a DirectoryOrCreate hostPath is made.
        let err = prepare(&pod, &dir.path().join("pod"), &src, false).unwrap_err();
        assert!(err.contains("does not exist on this node"), "{err}");
        std::fs::create_dir_all(&given).unwrap();
        let vols = prepare(&pod, &dir.path().join("pod"), &src, false).unwrap();
        assert!(made.is_dir());
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let m = mounts(&pod, c, &vols).unwrap();
        assert_eq!((m[0].host_path.clone(), m[0].read_only), (made, false));
        assert_eq!((m[1].host_path.clone(), m[1].read_only), (given, true));
        // An unbound claim waits.
        src.claims.remove("data-p");
        assert_eq!(
            prepare(&pod, &dir.path().join("pod"), &src, false).unwrap_err(),
            "persistentvolumeclaim \"data-p\" is not bound"
        );
    }
}
