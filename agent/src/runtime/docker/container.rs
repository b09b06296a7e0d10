//! Containers' lifecycle in the daemon: their names and labels, the create body of an app
//! container (joining its sandbox's network namespace, confined by its securityContext
//! through `security.rs`), create-and-start, stop and remove.

use std::time::Duration;

use hyper::Method;
use serde_json::{json, Value};

use super::client::enc;
use super::security;
use super::{
    other, DockerRuntime, L_ATTEMPT, L_CONTAINER, L_HASH, L_IMAGE, L_INIT, L_KIND, L_NAME, L_NODE,
    L_NS, L_OWNER, L_UID,
};
use crate::runtime::{ContainerConfig, PodRef, Result, RuntimeError, SandboxStatus};

/// A Docker container name from Kubernetes names (which are DNS labels and subdomains).
pub(super) fn container_name(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| {
            p.replace(
                |c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '-'),
                "-",
            )
        })
        .collect::<Vec<_>>()
        .join("_")
}

impl DockerRuntime {
    pub(super) fn labels(
        &self,
        pod: &PodRef,
        container: &str,
        kind: &str,
    ) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        for (k, v) in [
            (L_UID, pod.uid.as_str()),
            (L_NAME, pod.name.as_str()),
            (L_NS, pod.namespace.as_str()),
            (L_CONTAINER, container),
            (L_NODE, self.node.as_str()),
            (L_OWNER, self.owner.as_str()),
            (L_KIND, kind),
        ] {
            m.insert(k.to_string(), Value::String(v.to_string()));
        }
        m
    }

    pub(super) async fn create_and_start(&self, name: &str, body: &Value) -> Result<String> {
        let created = self
            .docker
            .json(
                Method::POST,
                &format!("/containers/create?name={}", enc(name)),
                Some(body),
            )
            .await
            .map_err(|e| RuntimeError::Create(e.to_string()))?;
        let id = created
            .get("Id")
            .and_then(|i| i.as_str())
            .ok_or_else(|| RuntimeError::Create("the daemon returned no container id".into()))?
            .to_string();
        match self
            .docker
            .json(Method::POST, &format!("/containers/{id}/start"), None)
            .await
        {
            Ok(_) => Ok(id),
            Err(e) => Err(RuntimeError::Start(e.to_string())),
        }
    }

    /// Starts one attempt of an app container in the pod's sandbox, pulling its image
    /// first as its pull policy says.
    pub(super) async fn start_app(
        &self,
        sandbox: &SandboxStatus,
        cfg: &ContainerConfig,
    ) -> Result<String> {
        self.ensure_image(&cfg.image, cfg.pull_policy).await?;
        let image_user = if security::needs_image_user(&cfg.security) {
            self.image_user(&cfg.image).await?
        } else {
            String::new()
        };
        security::verify_run_as_non_root(&cfg.security, &image_user, &cfg.pod, &cfg.name)
            .map_err(RuntimeError::InvalidConfig)?;
        let mut labels = self.labels(&cfg.pod, &cfg.name, "container");
        for (k, v) in [
            (L_ATTEMPT, cfg.attempt.to_string()),
            (L_INIT, cfg.init.to_string()),
            (L_HASH, cfg.hash.to_string()),
            (L_IMAGE, cfg.image.clone()),
        ] {
            labels.insert(k.into(), Value::String(v));
        }
        let binds: Vec<String> = cfg
            .mounts
            .iter()
            .map(|m| {
                format!(
                    "{}:{}{}",
                    m.host_path.display(),
                    m.container_path,
                    if m.read_only { ":ro" } else { "" }
                )
            })
            .collect();
        // json-file whatever the daemon's default driver: the logs API reads it (across
        // its rotated files), and it rotates as the kubelet's limits say.
        let mut host = json!({
            "NetworkMode": format!("container:{}", sandbox.id),
            "Binds": binds,
            "RestartPolicy": {"Name": "no"},
            "LogConfig": {
                "Type": "json-file",
                "Config": {
                    "max-size": self.log_limits.max_size.to_string(),
                    "max-file": self.log_limits.max_files.to_string(),
                },
            },
        });
        if let Some(m) = cfg.memory_limit_bytes {
            host["Memory"] = json!(m);
        }
        if let Some(c) = cfg.cpu_limit_millis {
            host["NanoCpus"] = json!(c.saturating_mul(1_000_000));
        }
        let mut body = json!({
            "Image": cfg.image,
            "Env": cfg.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "Labels": labels,
            "HostConfig": host,
        });
        if !cfg.command.is_empty() {
            body["Entrypoint"] = json!(cfg.command);
        }
        if !cfg.args.is_empty() {
            body["Cmd"] = json!(cfg.args);
        }
        if let Some(wd) = &cfg.working_dir {
            body["WorkingDir"] = json!(wd);
        }
        security::apply(&cfg.security, &image_user, &mut body);
        let name = container_name(&[
            "k8s",
            &cfg.name,
            &cfg.pod.name,
            &cfg.pod.namespace,
            &cfg.pod.uid,
            &cfg.attempt.to_string(),
        ]);
        self.create_and_start(&name, &body).await
    }

    /// The user an image runs as (its `Config.User`; empty: root).
    async fn image_user(&self, image: &str) -> Result<String> {
        let v = super::image::present(&self.docker, image)
            .await
            .map_err(other)?;
        Ok(v.as_ref()
            .and_then(|v| v["Config"]["User"].as_str())
            .unwrap_or("")
            .to_string())
    }

    pub(super) async fn stop_id(&self, id: &str, grace: Duration) -> Result<()> {
        let t = grace.as_secs_f64().ceil() as u64;
        let r = self
            .docker
            .json(Method::POST, &format!("/containers/{id}/stop?t={t}"), None)
            .await;
        self.forget(id);
        match r {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.status(), Some(304) | Some(404)) => Ok(()),
            Err(e) => Err(other(e)),
        }
    }

    pub(super) async fn remove_id(&self, id: &str) -> Result<()> {
        let r = self
            .docker
            .json(
                Method::DELETE,
                &format!("/containers/{id}?force=1&v=1"),
                None,
            )
            .await;
        self.forget(id);
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(other(e)),
        }
    }
}
