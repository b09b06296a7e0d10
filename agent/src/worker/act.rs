//! What a worker does for one planned [`Action`]: stop or remove containers, create the
//! sandbox, start a container (pull, create, start, postStart), or stop the pod; failures
//! back off per container.

use super::*;

impl Worker {
    pub(super) async fn act(&mut self, pod: &Pod, view: &PodView, a: &Action) -> bool {
        let rt = self.shared.runtime.clone();
        match a {
            Action::Remove { id } => {
                if let Err(e) = rt.remove_container(id).await {
                    debug!(id, error = %e, "removing an old attempt");
                }
            }
            Action::StopPod { grace } => {
                let names: Vec<String> = view
                    .containers
                    .iter()
                    .filter(|c| c.running())
                    .map(|c| c.name.clone())
                    .collect();
                for n in &names {
                    self.event(
                        pod,
                        EventType::Normal,
                        "Killing",
                        &format!("Stopping container {n}"),
                    );
                }
                let running: Vec<(String, String)> = view
                    .containers
                    .iter()
                    .filter(|c| c.running())
                    .map(|c| (c.id.clone(), c.name.clone()))
                    .collect();
                let left = self.pre_stop(pod, view, &running, *grace).await;
                if let Err(e) = rt.stop_pod(&self.uid, left).await {
                    warn!(pod = %pod_key(pod), error = %e, "stopping the pod");
                }
                self.probers.clear();
            }
            Action::CreateSandbox => {
                if self.backing_off("") {
                    return false;
                }
                let pr = pod_ref(pod);
                let cfg = SandboxConfig {
                    hostname: containers::hostname_and_domain(&self.shared, pod).0,
                    pod_dir: self.shared.pods_dir.join(pod_dir_name(&pr)),
                    pod: pr,
                };
                // The pod's resolv.conf, as the kubelet computes it for a new sandbox.
                let dns = if self.shared.pod_etc_files {
                    containers::write_resolv_conf(&self.shared, pod, &cfg.pod_dir)
                        .map_err(crate::runtime::RuntimeError::Other)
                } else {
                    Ok(())
                };
                let created = match dns {
                    Ok(()) => rt.run_sandbox(&cfg).await,
                    Err(e) => Err(e),
                };
                match created {
                    Ok(_) => {
                        self.retry.remove("");
                    }
                    Err(e) => {
                        warn!(pod = %pod_key(pod), error = %e, "creating the pod sandbox");
                        self.failed("", Duration::from_secs(1), Duration::from_secs(30));
                        self.event(
                            pod,
                            EventType::Warning,
                            "FailedCreatePodSandBox",
                            &format!("Failed to create pod sandbox: {e}"),
                        );
                    }
                }
            }
            Action::Stop {
                id,
                name,
                grace,
                why,
            } => {
                let msg = match why {
                    StopReason::LivenessFailed => {
                        format!("Container {name} failed liveness probe, will be restarted")
                    }
                    StopReason::StartupFailed => {
                        format!("Container {name} failed startup probe, will be restarted")
                    }
                    StopReason::SpecChanged => {
                        format!("Container {name} definition changed, will be restarted")
                    }
                };
                self.event(pod, EventType::Normal, "Killing", &msg);
                let left = self
                    .pre_stop(pod, view, &[(id.clone(), name.clone())], *grace)
                    .await;
                if let Err(e) = rt.stop_container(id, left).await {
                    warn!(pod = %pod_key(pod), container = %name, error = %e, "stopping a container");
                }
                self.probers.remove(id);
            }
            Action::Start {
                name,
                init,
                attempt,
                replaces_exit,
            } => {
                let key = sync::backoff_key(name, *init);
                if self.backing_off(&key) {
                    // A failed pull shows as ImagePullBackOff while it waits.
                    if let Some((reason, msg)) = self.start_errors.get_mut(name.as_str()) {
                        if reason == "ErrImagePull" {
                            *reason = "ImagePullBackOff".into();
                            *msg =
                                format!("Back-off pulling image {:?}", image_of(pod, name, *init));
                        }
                    }
                    return false;
                }
                match self
                    .start(pod, view, name, *init, *attempt, *replaces_exit)
                    .await
                {
                    Ok(()) => {
                        self.retry.remove(&key);
                    }
                    Err("ErrImagePull") => {
                        self.failed(&key, Duration::from_secs(10), Duration::from_secs(300))
                    }
                    Err(_) => self.failed(&key, Duration::from_secs(1), Duration::from_secs(60)),
                }
            }
        }
        true
    }

    async fn start(
        &mut self,
        pod: &Pod,
        view: &PodView,
        name: &str,
        init: bool,
        attempt: u32,
        replaces_exit: Option<Timestamp>,
    ) -> Result<(), &'static str> {
        let Some(c) = container_of(pod, name, init) else {
            return Ok(());
        };
        let Some(sandbox) = view.sandbox.clone() else {
            return Ok(());
        };
        if let Some(at) = replaces_exit {
            self.backoff
                .restarted(&sync::backoff_key(name, init), at, Timestamp::now());
        }
        let cfg = match containers::config(&self.shared, pod, c, init, attempt, &sandbox).await {
            Ok(cfg) => cfg,
            Err(msg) => {
                self.start_errors.insert(
                    name.to_string(),
                    ("CreateContainerConfigError".into(), msg.clone()),
                );
                self.event(pod, EventType::Warning, "Failed", &format!("Error: {msg}"));
                return Err("CreateContainerConfigError");
            }
        };
        match self.shared.runtime.start_container(&sandbox, &cfg).await {
            Ok(id) => {
                self.start_errors.remove(name);
                debug!(pod = %pod_key(pod), container = %name, attempt, id, "started");
                self.event(
                    pod,
                    EventType::Normal,
                    "Started",
                    &format!("Started container {name}"),
                );
                if let Some(h) = hooks::post_start(c) {
                    let ip = sandbox.ip.clone().unwrap_or_default();
                    let rt = self.shared.runtime.clone();
                    if let Err(msg) =
                        hooks::run(h, c, &id, &ip, rt.as_ref(), sync::grace(pod)).await
                    {
                        // As the kubelet: the container is killed and restarts by policy.
                        self.event(
                            pod,
                            EventType::Warning,
                            "FailedPostStartHook",
                            &format!("PostStartHook failed: {msg}"),
                        );
                        if let Err(e) = rt.stop_container(&id, sync::grace(pod)).await {
                            warn!(pod = %pod_key(pod), container = %name, error = %e, "stopping after a failed postStart");
                        }
                        return Ok(());
                    }
                }
                self.probers.insert(id, probes::probers(c, Instant::now()));
                Ok(())
            }
            Err(e) => {
                let reason = e.reason();
                warn!(pod = %pod_key(pod), container = %name, error = %e, "starting a container");
                self.event(pod, EventType::Warning, "Failed", &format!("Error: {e}"));
                // A failed start that left an attempt behind shows as that attempt's exit.
                if self
                    .shared
                    .runtime
                    .pod(&self.uid)
                    .await
                    .ok()
                    .and_then(|v| v.latest(name, init).map(|l| l.attempt))
                    != Some(attempt)
                {
                    self.start_errors
                        .insert(name.to_string(), (reason.to_string(), e.to_string()));
                    return Err(reason);
                }
                Ok(())
            }
        }
    }
}
