//! The pod lifecycle event generator, as the kubelet's PLEG: one relist of the runtime per
//! period for the whole node instead of every pod worker polling it. A pod whose sandbox or
//! containers changed since the previous relist (started, exited, appeared, vanished)
//! wakes its worker; workers otherwise sleep until their pod object changes, a probe or a
//! backoff is due, or the resync period ends.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::warn;

use crate::runtime::PodView;
use crate::runtime::Runtime;

/// How often the runtime is relisted (the kubelet's relist period).
pub const RELIST_PERIOD: Duration = Duration::from_secs(1);

/// The workers to wake, by pod uid.
#[derive(Default)]
pub struct Pleg {
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

/// A worker's subscription; dropping it unsubscribes.
pub struct Subscription<'a> {
    pleg: &'a Pleg,
    uid: String,
    pub notify: Arc<Notify>,
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        self.pleg.lock().remove(&self.uid);
    }
}

impl Pleg {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.wakers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes the worker of `uid` to the events of its pod.
    pub fn subscribe(&self, uid: &str) -> Subscription<'_> {
        let notify = Arc::new(Notify::new());
        self.lock().insert(uid.to_string(), notify.clone());
        Subscription {
            pleg: self,
            uid: uid.to_string(),
            notify,
        }
    }

    /// Wakes the workers of `uids` (a worker busy syncing wakes once it waits again).
    fn wake<'a>(&self, uids: impl IntoIterator<Item = &'a String>) {
        let wakers = self.lock();
        for uid in uids {
            if let Some(n) = wakers.get(uid) {
                n.notify_one();
            }
        }
    }
}

/// The pods whose view differs between two relists (present in one only, or changed).
pub fn changed<'a>(
    prev: &'a BTreeMap<String, PodView>,
    next: &'a BTreeMap<String, PodView>,
) -> Vec<&'a String> {
    let mut out: Vec<&String> = next
        .iter()
        .filter(|(uid, v)| prev.get(*uid) != Some(*v))
        .map(|(uid, _)| uid)
        .collect();
    out.extend(prev.keys().filter(|uid| !next.contains_key(*uid)));
    out
}

/// Relists the node's runtime every `period` and wakes the workers of changed pods, until
/// the task is dropped.
pub async fn run(runtime: Arc<dyn Runtime>, pleg: &Pleg, node: &str, period: Duration) {
    let mut prev: BTreeMap<String, PodView> = BTreeMap::new();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match runtime.pods().await {
            Ok(next) => {
                pleg.wake(changed(&prev, &next));
                prev = next;
            }
            Err(e) => warn!(node = %node, error = %e, "relisting the runtime"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::SandboxStatus;

    fn view(ip: &str) -> PodView {
        PodView {
            pod: None,
            sandbox: Some(SandboxStatus {
                id: "s".into(),
                ready: true,
                ip: Some(ip.into()),
            }),
            containers: vec![],
        }
    }

    #[test]
    fn changed_pods_are_the_new_the_gone_and_the_different() {
        let prev: BTreeMap<String, PodView> = [
            ("same".to_string(), view("1")),
            ("gone".to_string(), view("2")),
            ("diff".to_string(), view("3")),
        ]
        .into();
        let next: BTreeMap<String, PodView> = [
            ("same".to_string(), view("1")),
            ("diff".to_string(), view("4")),
            ("new".to_string(), view("5")),
        ]
        .into();
        let mut got: Vec<&str> = changed(&prev, &next)
            .into_iter()
            .map(|s| s.as_str())
            .collect();
        got.sort();
        assert_eq!(got, ["diff", "gone", "new"]);
        assert!(changed(&next, &next).is_empty());
    }

    #[tokio::test]
    async fn a_wake_before_the_wait_is_kept_and_unsubscribing_forgets() {
        let pleg = Pleg::default();
        let sub = pleg.subscribe("u");
        pleg.wake([&"u".to_string()]);
        tokio::time::timeout(Duration::from_secs(5), sub.notify.notified())
            .await
            .expect("the stored wake-up");
        drop(sub);
        assert!(pleg.lock().is_empty());
    }
}
