//! The one shape of a controller, as kube-runtime's `Controller`: a [`Reconciler`] with
//! `reconcile` (one key: compare, act once, say when to look again) and `error_policy`
//! (what a failure means for that key), and the runner that drives it over a
//! [`WorkQueue`].
//!
//! Contract: a reconcile never loops or sleeps; waiting is an [`Action`] it returns. The
//! runner hands a key to one worker at a time (the queue's guarantee), runs every reconcile
//! inside a `reconcile` span carrying the controller's name and the key's namespace and
//! name, forgets a key's backoff when it succeeds, logs a failure with structured fields
//! and applies the error policy (by default the key's exponential backoff), and queues
//! every key again every [`RESYNC`] so that a missed change is repaired.

use std::fmt;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use component_base::backoff::Backoff;
use component_base::supervise::catch_panic;
use futures::future::BoxFuture;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::workqueue::WorkQueue;

/// How often every key is queued again.
pub const RESYNC: Duration = Duration::from_secs(300);

/// What happens to a key after it was reconciled (or failed to be).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action(Then);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    AwaitChange,
    Requeue(Duration),
    Backoff,
}

impl Action {
    /// Reconcile again after `after`, even if nothing changes (time has to pass).
    pub fn requeue(after: Duration) -> Self {
        Self(Then::Requeue(after))
    }

    /// Nothing to do until a watched change (or the periodic resync) queues the key.
    pub fn await_change() -> Self {
        Self(Then::AwaitChange)
    }

    /// Reconcile again after the key's exponential backoff (5 ms doubling to 1000 s, reset
    /// by the next success): the default error policy.
    pub fn backoff() -> Self {
        Self(Then::Backoff)
    }

    /// The requeue delay, if this is [`Action::requeue`].
    pub fn requeue_after(&self) -> Option<Duration> {
        match self.0 {
            Then::Requeue(d) => Some(d),
            _ => None,
        }
    }
}

/// A queue key, as the span of its reconcile names it.
pub trait ObjectKey: Clone + Eq + Hash + Send + Sync + fmt::Debug + 'static {
    fn namespace(&self) -> Option<&str> {
        None
    }
    fn name(&self) -> Option<&str>;
    fn uid(&self) -> Option<&str> {
        None
    }
}

/// A namespaced object: (namespace, name).
impl ObjectKey for (String, String) {
    fn namespace(&self) -> Option<&str> {
        Some(&self.0)
    }
    fn name(&self) -> Option<&str> {
        Some(&self.1)
    }
}

/// A cluster-scoped object, by name.
impl ObjectKey for String {
    fn name(&self) -> Option<&str> {
        Some(self)
    }
}

/// A controller: see the module's contract.
pub trait Reconciler: Send + Sync + Sized + 'static {
    type Key: ObjectKey;
    type Error: std::error::Error + Send + Sync + 'static;

    /// Brings what `key` names in line with its spec, as the caches show the world: acts
    /// once and returns; it never loops or sleeps.
    fn reconcile(
        &self,
        key: &Self::Key,
    ) -> impl Future<Output = Result<Action, Self::Error>> + Send;

    /// What to do with `key` after `reconcile` failed with `error`.
    fn error_policy(&self, _key: &Self::Key, _error: &Self::Error) -> Action {
        Action::backoff()
    }

    /// Every key there is, queued again every [`RESYNC`].
    fn all_keys(&self) -> Vec<Self::Key>;

    /// Runs once before the first reconcile, after the informers the controller declared
    /// have listed. A controller with caches of its own (the garbage collector's graph)
    /// fills them here; what keeps them current goes into `tasks`, which live as long as
    /// the controller.
    fn prepare(self: Arc<Self>, tasks: &mut JoinSet<()>) -> impl Future<Output = ()> + Send {
        let _ = tasks;
        async {}
    }
}

/// A reconciler with its queue and worker count, ready to run.
pub struct Controller<R: Reconciler> {
    reconciler: Arc<R>,
    queue: Arc<WorkQueue<R::Key>>,
    workers: usize,
}

impl<R: Reconciler> Controller<R> {
    /// `queue` is the one the controller's informer handlers add keys to.
    pub fn new(reconciler: Arc<R>, queue: Arc<WorkQueue<R::Key>>) -> Self {
        Self {
            reconciler,
            queue,
            workers: 1,
        }
    }

    /// How many keys are reconciled at once (at least one).
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n.max(1);
        self
    }

    /// Runs until aborted, or until a task `prepare` started ends (logged; the
    /// controller-manager then stops, as when an informer ends). A reconcile that panics
    /// is logged and its key retried after the key's backoff; a worker that ends all the
    /// same is logged and started again after a backoff. Nothing dies silently.
    pub async fn run(self, name: &'static str) {
        self.queue.export_metrics_as(name);
        let mut tasks = JoinSet::new();
        self.reconciler.clone().prepare(&mut tasks).await;
        let mut workers = JoinSet::new();
        for _ in 0..self.workers {
            workers.spawn(work(name, self.reconciler.clone(), self.queue.clone()));
        }
        let mut restarts = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut resync = tokio::time::interval_at(tokio::time::Instant::now() + RESYNC, RESYNC);
        loop {
            tokio::select! {
                _ = resync.tick() => {
                    for k in self.reconciler.all_keys() {
                        self.queue.add(k);
                    }
                }
                Some(ended) = workers.join_next() => {
                    let wait = restarts.next_delay();
                    tracing::error!(controller = name, outcome = ?ended, retry = ?wait, "a worker ended; starting it again");
                    tokio::time::sleep(wait).await;
                    workers.spawn(work(name, self.reconciler.clone(), self.queue.clone()));
                }
                Some(ended) = tasks.join_next() => {
                    tracing::error!(controller = name, outcome = ?ended, "a task the controller depends on ended; stopping the controller");
                    return;
                }
            }
        }
    }
}

/// One worker: takes keys off the queue and reconciles them, forever. A reconcile that
/// panics (a bug some object's values reach) costs that key a backoff, not the worker.
async fn work<R: Reconciler>(name: &'static str, r: Arc<R>, q: Arc<WorkQueue<R::Key>>) {
    loop {
        let key = q.get().await;
        if let Err(panic) = catch_panic(process(name, &*r, &q, &key)).await {
            tracing::error!(
                controller = name,
                namespace = key.namespace(),
                name = key.name(),
                panic = %panic,
                "reconcile panicked; retrying the key after its backoff"
            );
            q.add_rate_limited(key.clone());
        }
        q.done(&key);
    }
}

/// One reconcile of `key` and what follows from its outcome.
async fn process<R: Reconciler>(
    name: &'static str,
    r: &R,
    q: &Arc<WorkQueue<R::Key>>,
    key: &R::Key,
) {
    let span = tracing::info_span!(
        "reconcile",
        controller = name,
        namespace = key.namespace(),
        name = key.name(),
        uid = key.uid(),
    );
    let action = match r.reconcile(key).instrument(span.clone()).await {
        Ok(action) => {
            q.forget(key);
            action
        }
        Err(e) => {
            let action = r.error_policy(key, &e);
            tracing::warn!(parent: &span, error = %Chain(&e), retry = ?action.0, "reconcile failed");
            action
        }
    };
    match action.0 {
        Then::AwaitChange => {}
        Then::Requeue(d) => q.add_after(key.clone(), d),
        Then::Backoff => q.add_rate_limited(key.clone()),
    }
}

/// An error with its sources, `outer: inner: innermost`; a source whose text the one
/// before it already shows (kube's API errors repeat their status) is left out.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            let text = s.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            source = s.source();
        }
        Ok(())
    }
}

/// A controller with its reconciler's type erased, as the registration table makes them.
pub trait Run: Send {
    fn run(self: Box<Self>, name: &'static str) -> BoxFuture<'static, ()>;
}

impl<R: Reconciler> Run for Controller<R> {
    fn run(self: Box<Self>, name: &'static str) -> BoxFuture<'static, ()> {
        Box::pin(Controller::run(*self, name))
    }
}

impl<R: Reconciler> From<Controller<R>> for Box<dyn Run> {
    fn from(c: Controller<R>) -> Self {
        Box::new(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, thiserror::Error)]
    enum Error {
        #[error("writing {name}")]
        Write {
            name: String,
            #[source]
            source: std::io::Error,
        },
    }

    /// Fails each key's first `fail` reconciles, then asks for `then`.
    struct Script {
        fail: usize,
        then: Action,
        seen: Mutex<Vec<(String, String)>>,
        done: tokio::sync::Notify,
    }

    impl Reconciler for Script {
        type Key = (String, String);
        type Error = Error;

        async fn reconcile(&self, key: &Self::Key) -> Result<Action, Error> {
            let n = {
                let mut seen = self.seen.lock().unwrap();
                seen.push(key.clone());
                seen.len()
            };
            self.done.notify_one();
            if n <= self.fail {
                return Err(Error::Write {
                    name: key.1.clone(),
                    source: std::io::Error::other("refused"),
                });
            }
            Ok(self.then)
        }

        fn error_policy(&self, _key: &Self::Key, _error: &Error) -> Action {
            Action::requeue(Duration::from_millis(20))
        }

        fn all_keys(&self) -> Vec<Self::Key> {
            vec![]
        }
    }

    fn script(fail: usize, then: Action) -> Script {
        Script {
            fail,
            then,
            seen: Mutex::default(),
            done: tokio::sync::Notify::new(),
        }
    }

    /// Runs `script` over one key until it has reconciled `runs` times, then `linger`
    /// longer; returns how many reconciles there were.
    async fn run_until(script: Script, runs: usize, linger: Duration) -> usize {
        let r = Arc::new(script);
        let q = WorkQueue::new();
        q.add(("ns".to_string(), "a".to_string()));
        let task = tokio::spawn(Controller::new(r.clone(), q).workers(2).run("test"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while r.seen.lock().unwrap().len() < runs {
            tokio::select! {
                _ = r.done.notified() => {}
                _ = tokio::time::sleep_until(deadline) => panic!("{runs} reconciles within 5 s"),
            }
        }
        tokio::time::sleep(linger).await;
        task.abort();
        let seen = r.seen.lock().unwrap();
        assert!(seen.iter().all(|k| k.1 == "a"));
        seen.len()
    }

    #[tokio::test]
    async fn a_failure_follows_the_error_policy_and_a_success_its_action() {
        // Two failures retried by the policy, a success, then its requeue.
        let s = script(2, Action::requeue(Duration::from_millis(10)));
        assert!(run_until(s, 4, Duration::ZERO).await >= 4);
        // A failure retried, then a success that awaits a change: nothing more.
        let s = script(1, Action::await_change());
        assert_eq!(run_until(s, 2, Duration::from_millis(100)).await, 2);
    }

    /// Panics on each key's first `panics` reconciles, then succeeds.
    struct Panicky {
        panics: usize,
        seen: Mutex<usize>,
        done: tokio::sync::Notify,
    }

    impl Reconciler for Panicky {
        type Key = (String, String);
        type Error = Error;

        async fn reconcile(&self, key: &Self::Key) -> Result<Action, Error> {
            let n = {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                *seen += 1;
                *seen
            };
            self.done.notify_one();
            if n <= self.panics {
                panic!("reconcile of {key:?} panicked on purpose");
            }
            Ok(Action::await_change())
        }

        fn all_keys(&self) -> Vec<Self::Key> {
            vec![]
        }
    }

    #[tokio::test]
    async fn a_panicking_reconcile_is_retried_and_the_worker_lives_on() {
        let r = Arc::new(Panicky {
            panics: 2,
            seen: Mutex::new(0),
            done: tokio::sync::Notify::new(),
        });
        let q = WorkQueue::new();
        q.add(("ns".to_string(), "a".to_string()));
        // One worker: if the panic killed it, nothing would reconcile again.
        let task = tokio::spawn(Controller::new(r.clone(), q.clone()).workers(1).run("test"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while *r.seen.lock().unwrap() < 3 {
            tokio::select! {
                _ = r.done.notified() => {}
                _ = tokio::time::sleep_until(deadline) => panic!("3 reconciles within 5 s"),
            }
        }
        // The same worker takes new keys.
        q.add(("ns".to_string(), "b".to_string()));
        while *r.seen.lock().unwrap() < 4 {
            tokio::select! {
                _ = r.done.notified() => {}
                _ = tokio::time::sleep_until(deadline) => panic!("a new key after the panics"),
            }
        }
        assert!(!task.is_finished());
        task.abort();
    }

    #[test]
    fn errors_are_shown_with_their_sources() {
        let e = Error::Write {
            name: "rs".into(),
            source: std::io::Error::other("refused"),
        };
        assert_eq!(Chain(&e).to_string(), "writing rs: refused");
        #[derive(Debug, thiserror::Error)]
        #[error("api error: {source} (status)")]
        struct Repeats {
            source: std::io::Error,
        }
        let repeated = Error::Write {
            name: "rs".into(),
            source: std::io::Error::other(Repeats {
                source: std::io::Error::other("conflict"),
            }),
        };
        assert_eq!(
            Chain(&repeated).to_string(),
            "writing rs: api error: conflict (status)"
        );
        assert_eq!(
            Action::requeue(Duration::from_secs(1)).requeue_after(),
            Some(Duration::from_secs(1))
        );
        assert_eq!(Action::await_change().requeue_after(), None);
    }
}
