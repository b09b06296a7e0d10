//! A worker's probes: due probes run, and their verdicts (liveness and startup failures,
//! readiness and startup successes) feed the plan and the status.

use super::*;

impl Worker {
    /// Runs the probes that are due, for the containers that run.
    pub(super) async fn run_probes(&mut self, pod: &Pod, view: &PodView) {
        let Some(spec) = pod.spec.as_ref() else {
            return;
        };
        let pod_ip = view
            .sandbox
            .as_ref()
            .and_then(|s| s.ip.clone())
            .unwrap_or_default();
        let now = Instant::now();
        self.probers
            .retain(|id, _| view.containers.iter().any(|c| &c.id == id && c.running()));
        for s in view.containers.iter().filter(|c| c.running() && !c.init) {
            let Some(c) = spec.containers.iter().find(|c| c.name == s.name) else {
                continue;
            };
            // Containers adopted from an earlier run get probers from now.
            let probers = self
                .probers
                .entry(s.id.clone())
                .or_insert_with(|| probes::probers(c, now));
            let startup_ok = probers
                .iter()
                .find(|p| p.kind == Kind::Startup)
                .is_none_or(|p| p.ok);
            for p in probers.iter_mut() {
                if !p.due(now) || (p.kind != Kind::Startup && !startup_ok) {
                    continue;
                }
                if p.kind == Kind::Startup && p.ok {
                    continue;
                }
                let out = probes::run(
                    p.probe(),
                    c,
                    &s.id,
                    &pod_ip,
                    self.shared.runtime.as_ref(),
                    p.timeout(),
                )
                .await;
                let failed = out.as_ref().err().cloned();
                let changed = p.record(out, Instant::now());
                if let Some(m) = failed {
                    let what = match p.kind {
                        Kind::Liveness => "Liveness",
                        Kind::Readiness => "Readiness",
                        Kind::Startup => "Startup",
                    };
                    self.shared.recorder.record(
                        &object_ref(pod),
                        EventType::Warning,
                        "Unhealthy",
                        &format!("{what} probe failed: {m}"),
                    );
                }
                if changed {
                    debug!(pod = %pod_key(pod), container = %s.name, kind = ?p.kind, ok = p.ok, "probe verdict changed");
                }
            }
        }
    }

    pub(super) fn probe_failures(&self, view: &PodView) -> (HashSet<String>, HashSet<String>) {
        let mut unhealthy = HashSet::new();
        let mut startup = HashSet::new();
        for c in &view.containers {
            for p in self.probers.get(&c.id).into_iter().flatten() {
                match p.kind {
                    Kind::Liveness if !p.ok => {
                        unhealthy.insert(c.id.clone());
                    }
                    Kind::Startup if !p.ok && p.failed_out() => {
                        startup.insert(c.id.clone());
                    }
                    _ => {}
                }
            }
        }
        (unhealthy, startup)
    }

    /// (ready, started): running containers whose readiness passes and whose startup probe
    /// (if any) has passed.
    pub(super) fn probe_verdicts(&self, view: &PodView) -> (HashSet<String>, HashSet<String>) {
        let mut ready = HashSet::new();
        let mut started = HashSet::new();
        for c in view.containers.iter().filter(|c| c.running()) {
            let ps = self.probers.get(&c.id);
            let verdict = |k: Kind, default: bool| {
                ps.and_then(|ps| ps.iter().find(|p| p.kind == k))
                    .map_or(default, |p| p.ok)
            };
            if verdict(Kind::Startup, true) {
                started.insert(c.id.clone());
                if verdict(Kind::Readiness, true) {
                    ready.insert(c.id.clone());
                }
            }
        }
        (ready, started)
    }
}
