//! Applying committed entries to the state machine: a batch entry command by command, every
//! other entry whole, each in one RocksDB write batch with the in-memory state updated after
//! it, and the watch events each produced handed back in order.
//!
//! Each log entry is applied in one RocksDB write batch that also records the entry's log id,
//! so after a crash the state is exactly "every entry up to the recorded id". Those writes
//! are not synced themselves: the log entries are, and the WAL they share is synced in order.
//! A batch entry is the exception: each of its commands is a write batch of its own that
//! records how far the entry got (`KEY_PARTIAL`), so re-applying it skips what is done.
//!
//! What a command produces is either its outcome, recorded as its output even when it is a
//! refusal (a lease that does not exist, a compacted revision), or a `StorageFault` (the
//! database failed to read or write): then nothing of the step is written or counted as
//! applied, and the fault goes back to the caller, which stops the member (`fatal`).

use std::sync::Arc;
use std::time::Instant;

use openraft::EntryPayload;
use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::{DeleteRangeRequest, RequestOp, TxnRequest};
use rocksdb::WriteBatch;
use tracing::{info, warn};

use super::super::db::{cf, encode, CF_META};
use super::super::mvcc_store::{self, HistoryEvent, LeaseRecord};
use super::{
    MemberAttrs, SmState, Store, ALARM_CORRUPT, ALARM_NOSPACE, KEY_ALARMS, KEY_APPLIED, KEY_AUTH,
    KEY_MEMBERSHIP, KEY_PARTIAL, KEY_REVS, MEMBER_PREFIX,
};
use crate::auth::Effect;
use crate::error::{refusal_or_fault, KvError, StorageFault};
use crate::mvcc::{txn, Change};
use crate::raft::types::{Applied, Command, Entry, LogId, Output, Pb, StoredMembership};
use crate::watch::hub::RevisionEvents;

/// An apply step slower than this is logged, as etcd logs a slow apply.
const SLOW_APPLY: std::time::Duration = std::time::Duration::from_millis(100);

/// What one write batch applies.
enum Step {
    Blank,
    Membership(openraft::Membership<crate::raft::types::NodeId, crate::raft::types::Member>),
    Command(Command),
}

enum Progress {
    Done,
    Partial(usize),
}

/// Work to do once an entry's batch is written and the in-memory state updated.
type AfterApply = Option<Box<dyn FnOnce(&Store)>>;

impl Store {
    /// Applies one entry; returns its result and the events it produced, in order, or the
    /// storage fault that stopped it.
    pub(super) fn apply_entry(
        &self,
        entry: Entry,
    ) -> Result<(Applied, Vec<RevisionEvents>), StorageFault> {
        let mut events = Vec::new();
        let applied = match entry.payload {
            EntryPayload::Normal(Command::Batch(cmds)) if !cmds.is_empty() => {
                // A crash in the middle of a batch leaves `KEY_PARTIAL` naming the last
                // command applied; re-applying the entry skips those.
                let done: Option<(u64, usize)> =
                    self.meta(KEY_PARTIAL).map_err(KvError::into_fault)?;
                let skip = match done {
                    Some((index, sub)) if index == entry.log_id.index => sub + 1,
                    _ => 0,
                };
                let last = cmds.len() - 1;
                let mut results = Vec::with_capacity(cmds.len());
                for (i, cmd) in cmds.into_iter().enumerate() {
                    if i < skip {
                        let revision = self.revisions().current;
                        results.push(Applied {
                            revision,
                            output: Err(KvError::internal("applied before a restart")),
                        });
                        continue;
                    }
                    let progress = if i == last {
                        Progress::Done
                    } else {
                        Progress::Partial(i)
                    };
                    let (a, ev) = self.apply_step(entry.log_id, Step::Command(cmd), progress)?;
                    events.extend(ev);
                    results.push(a);
                }
                let revision = self.revisions().current;
                Applied {
                    revision,
                    output: Ok(Output::Batch(results)),
                }
            }
            EntryPayload::Normal(cmd) => {
                let (a, ev) = self.apply_step(entry.log_id, Step::Command(cmd), Progress::Done)?;
                events.extend(ev);
                a
            }
            EntryPayload::Blank => {
                self.apply_step(entry.log_id, Step::Blank, Progress::Done)?
                    .0
            }
            EntryPayload::Membership(m) => {
                self.apply_step(entry.log_id, Step::Membership(m), Progress::Done)?
                    .0
            }
        };
        Ok((applied, events))
    }

    /// Applies one step in one write batch. `Progress::Done` completes the entry (records it
    /// as applied); `Partial(i)` records that command `i` of a batch entry is applied.
    fn apply_step(
        &self,
        log_id: LogId,
        step: Step,
        progress: Progress,
    ) -> Result<(Applied, Option<RevisionEvents>), StorageFault> {
        let started = Instant::now();
        let mut st = self.state();
        let mut batch = WriteBatch::default();
        let meta = cf(&self.db, CF_META);
        let mut events = None;
        let mut after: AfterApply = None;
        let output = match step {
            Step::Blank => Ok(Output::Done),
            Step::Membership(m) => {
                st.membership = StoredMembership::new(Some(log_id), m);
                batch.put_cf(meta, KEY_MEMBERSHIP, encode(&st.membership));
                info!(log_index = log_id.index, membership = ?st.membership.membership(), "membership changed");
                Ok(Output::Done)
            }
            Step::Command(cmd) => refusal_or_fault(self.apply_command(
                cmd,
                log_id,
                &mut st,
                &mut batch,
                &mut events,
                &mut after,
            ))?,
        };
        match progress {
            Progress::Done => {
                st.applied = Some(log_id);
                batch.put_cf(meta, KEY_APPLIED, encode(&st.applied));
                batch.delete_cf(meta, KEY_PARTIAL);
            }
            Progress::Partial(i) => batch.put_cf(meta, KEY_PARTIAL, encode(&(log_id.index, i))),
        }
        batch.put_cf(meta, KEY_REVS, encode(&st.revs));
        let began = Instant::now();
        let (rows, bytes) = (batch.len(), batch.size_in_bytes());
        self.db.write(batch).map_err(StorageFault::new)?;
        let written = began.elapsed();
        crate::metrics::global().backend_commit(written);
        // etcd's "apply request took too long" (its expected duration is 100 ms).
        if started.elapsed() > SLOW_APPLY {
            warn!(
                log_index = log_id.index,
                took_ms = started.elapsed().as_millis() as u64,
                execute_ms = began.saturating_duration_since(started).as_millis() as u64,
                write_ms = written.as_millis() as u64,
                rows,
                bytes,
                "apply request took too long"
            );
        }
        let revision = st.revs.current;
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = st;
        if let Some(f) = after {
            f(self);
        }
        Ok((Applied { revision, output }, events))
    }

    fn apply_command(
        &self,
        cmd: Command,
        log_id: LogId,
        st: &mut SmState,
        batch: &mut WriteBatch,
        events: &mut Option<RevisionEvents>,
        after: &mut AfterApply,
    ) -> Result<Output, KvError> {
        let nospace = st.alarms.iter().any(|(_, a)| *a == ALARM_NOSPACE);
        // As etcd's `applierV3Corrupt`: with CORRUPT active, nothing that changes the key
        // space or the leases is applied (reads are served outside the log).
        let corrupt = st.alarms.iter().any(|(_, a)| *a == ALARM_CORRUPT);
        let refuse_if_corrupt = || {
            if corrupt {
                Err(KvError::Corrupt)
            } else {
                Ok(())
            }
        };
        match cmd {
            Command::Txn(Pb(t)) => {
                refuse_if_corrupt()?;
                if nospace && txn_has_put(&t) {
                    return Err(KvError::NoSpace);
                }
                let outcome = txn::execute(&self.view(), st.revs, &t)?;
                self.record_changes(st, batch, events, outcome.revision, outcome.changes);
                Ok(Output::Txn(Pb(outcome.response)))
            }
            Command::Compact { revision } => {
                refuse_if_corrupt()?;
                if revision <= st.revs.compacted {
                    return Err(KvError::Compacted {
                        compact_revision: st.revs.compacted,
                    });
                }
                if revision > st.revs.current {
                    return Err(KvError::FutureRevision);
                }
                st.revs.compacted = revision;
                let tx = self.compactor.clone();
                *after = Some(Box::new(move |_| {
                    let _ = tx.send(revision);
                }));
                info!(revision, "compacted");
                Ok(Output::Done)
            }
            Command::LeaseGrant { id, ttl } => {
                refuse_if_corrupt()?;
                if nospace {
                    return Err(KvError::NoSpace);
                }
                if self.view().lease(id)?.is_some() {
                    return Err(KvError::LeaseExists);
                }
                mvcc_store::put_lease(&self.db, batch, id, LeaseRecord { ttl });
                *after = Some(Box::new(move |s| s.lessor.granted(id, ttl)));
                Ok(Output::LeaseGranted { id, ttl })
            }
            Command::LeaseRevoke { id } => {
                refuse_if_corrupt()?;
                let view = self.view();
                if view.lease(id)?.is_none() {
                    return Err(KvError::LeaseNotFound);
                }
                let keys = view.lease_keys(id)?;
                let t = TxnRequest {
                    success: keys
                        .into_iter()
                        .map(|key| RequestOp {
                            request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                                key,
                                ..Default::default()
                            })),
                        })
                        .collect(),
                    ..Default::default()
                };
                let outcome = txn::execute(&view, st.revs, &t)?;
                drop(view);
                self.record_changes(st, batch, events, outcome.revision, outcome.changes);
                mvcc_store::delete_lease(&self.db, batch, id);
                *after = Some(Box::new(move |s| s.lessor.revoked(id)));
                Ok(Output::Done)
            }
            Command::Alarm {
                action,
                member_id,
                alarm,
            } => {
                match action {
                    1 if !st.alarms.contains(&(member_id, alarm)) => {
                        warn!(member = %format!("{member_id:x}"), alarm, "alarm raised");
                        st.alarms.push((member_id, alarm));
                    }
                    2 => {
                        let before = st.alarms.len();
                        st.alarms
                            .retain(|a| !(a.0 == member_id && (alarm == 0 || a.1 == alarm)));
                        if st.alarms.len() != before {
                            info!(member = %format!("{member_id:x}"), alarm, "alarm cleared");
                        }
                    }
                    _ => {}
                }
                batch.put_cf(cf(&self.db, CF_META), KEY_ALARMS, encode(&st.alarms));
                Ok(Output::Alarms(st.alarms.clone()))
            }
            Command::Batch(_) => Err(KvError::internal("a batch inside a batch")),
            Command::AsUser { user, cmd } => {
                if matches!(*cmd, Command::AsUser { .. } | Command::Batch(_)) {
                    return Err(KvError::internal("a nested command inside AsUser"));
                }
                let auth = st.auth.clone();
                if auth.enabled {
                    let needs = cmd.auth_needs();
                    auth.check(user.as_deref(), &needs, &mut |id| {
                        self.view().lease_keys(id)
                    })?;
                }
                self.apply_command(*cmd, log_id, st, batch, events, after)
            }
            Command::Auth(op) => {
                let mut next = (*st.auth).clone();
                let what = op.to_string();
                let effect = next.apply(op)?;
                if !matches!(effect, Effect::Issue { .. }) {
                    info!(change = %what, auth_revision = next.revision, "auth store changed");
                }
                batch.put_cf(cf(&self.db, CF_META), KEY_AUTH, encode(&next));
                st.auth = Arc::new(next);
                let index = log_id.index;
                let output = match &effect {
                    Effect::Issue { .. } => Output::Authenticated { index },
                    _ => Output::Done,
                };
                *after = match effect {
                    Effect::Nothing => None,
                    Effect::Issue { user, token } => Some(Box::new(move |s| {
                        s.tokens.issue(token, user, index, Instant::now())
                    })),
                    Effect::RevokeUser(user) => {
                        Some(Box::new(move |s| s.tokens.invalidate_user(&user)))
                    }
                    Effect::RevokeAll => Some(Box::new(|s| s.tokens.clear())),
                };
                Ok(output)
            }
            Command::PublishMember {
                id,
                name,
                client_urls,
            } => {
                let attrs = MemberAttrs { name, client_urls };
                let mut key = MEMBER_PREFIX.to_vec();
                key.extend_from_slice(&id.to_be_bytes());
                batch.put_cf(cf(&self.db, CF_META), key, encode(&attrs));
                info!(member = %format!("{id:x}"), name = %attrs.name, "member published");
                st.members.insert(id, attrs);
                Ok(Output::Done)
            }
        }
    }

    fn record_changes(
        &self,
        st: &mut SmState,
        batch: &mut WriteBatch,
        events: &mut Option<RevisionEvents>,
        revision: i64,
        changes: Vec<Change>,
    ) {
        if changes.is_empty() {
            return;
        }
        if batch.is_empty() {
            // Sized once: growing a batch of many changes by doubling copies it over and
            // over into fresh memory, the dearest part of a large DeleteRange.
            *batch = WriteBatch::with_capacity_bytes(mvcc_store::batch_bytes(&changes));
        }
        mvcc_store::write_changes(&self.db, batch, &changes, revision);
        st.revs.current = revision;
        // The changes become the watch events as they are: no copy of keys or values.
        *events = Some(RevisionEvents {
            revision,
            events: changes
                .into_iter()
                .map(|c| HistoryEvent {
                    revision,
                    kind: c.kind,
                    kv: c.kv,
                    prev: c.prev,
                    prev_value_omitted: c.prev_value_omitted,
                })
                .collect(),
        });
    }
}

fn txn_has_put(t: &TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Request::RequestPut(_)) => true,
            Some(Request::RequestTxn(inner)) => txn_has_put(inner),
            _ => false,
        })
}

#[cfg(test)]
mod tests {
    use openraft::EntryPayload;
    use proto::etcdserverpb::PutRequest;

    use super::super::super::db::{DataDir, CF_KV};
    use super::*;
    use crate::mvcc::keys::version_key;

    fn log_id(index: u64) -> LogId {
        LogId::new(crate::raft::types::leader(1, 1), index)
    }

    fn entry(index: u64, cmd: Command) -> Entry {
        Entry {
            log_id: log_id(index),
            payload: EntryPayload::Normal(cmd),
        }
    }

    fn put(k: &str) -> Command {
        Command::Txn(Pb(txn::put_as_txn(PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })))
    }

    /// A store with key "a" written at revision 2 by entry 1.
    fn store(dir: &std::path::Path) -> std::sync::Arc<Store> {
        let store = Store::open(DataDir::new(dir).open_db().unwrap(), 16).unwrap();
        store.apply_entry(entry(1, put("a"))).unwrap();
        store
    }

    #[test]
    fn a_refused_command_is_applied_with_its_refusal_as_output() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let (a, _) = store
            .apply_entry(entry(2, Command::LeaseRevoke { id: 9 }))
            .unwrap();
        assert_eq!(a.output.unwrap_err(), KvError::LeaseNotFound);
        let (a, _) = store
            .apply_entry(entry(3, Command::Compact { revision: 100 }))
            .unwrap();
        assert_eq!(a.output.unwrap_err(), KvError::FutureRevision);
        assert_eq!(store.state().applied, Some(log_id(3)));
    }

    #[test]
    fn a_row_that_does_not_decode_is_a_fault_and_nothing_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        // Damage the stored version of "a": the next Put reads it for its previous value.
        store
            .db
            .put_cf(cf(&store.db, CF_KV), version_key(b"a", 2), [0xFF, 0xFF])
            .unwrap();
        let before = store.state();
        let fault = store.apply_entry(entry(2, put("a"))).unwrap_err();
        assert!(fault.0.contains("malformed kv row"), "{fault}");
        let after = store.state();
        assert_eq!(
            after.applied, before.applied,
            "the entry is not counted as applied"
        );
        assert_eq!(after.revs, before.revs);
        // Nor on disk.
        drop(store);
        let reopened = Store::open(DataDir::new(dir.path()).open_db().unwrap(), 16).unwrap();
        assert_eq!(reopened.state().applied, Some(log_id(1)));
    }

    #[test]
    fn a_fault_inside_a_batch_entry_stops_it_where_it_happened() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        store
            .db
            .put_cf(cf(&store.db, CF_KV), version_key(b"a", 2), [0xFF])
            .unwrap();
        let batch = Command::Batch(vec![put("b"), put("a"), put("c")]);
        assert!(store.apply_entry(entry(2, batch)).is_err());
        // "b" went in on its own write batch with its progress; "a" and "c" did not.
        let st = store.state();
        assert_eq!(st.applied, Some(log_id(1)));
        assert_eq!(st.revs.current, 3);
        let partial: Option<(u64, usize)> = store.meta(KEY_PARTIAL).unwrap();
        assert_eq!(partial, Some((2, 0)));
    }

    #[tokio::test]
    #[should_panic(expected = "storage fault, stopping this member")]
    async fn a_fault_while_applying_stops_the_member() {
        use openraft::storage::RaftStateMachine;

        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        store
            .db
            .put_cf(cf(&store.db, CF_KV), version_key(b"a", 2), [0xFF])
            .unwrap();
        let mut sm = super::super::StateMachine::new(store, dir.path().join("snap"));
        let entries = futures::stream::iter([Ok((entry(2, put("a")), None))]);
        let _ = sm.apply(entries).await;
    }

    #[test]
    fn with_corrupt_active_changes_are_refused_until_it_is_disarmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let alarm = |action| Command::Alarm {
            action,
            member_id: 7,
            alarm: ALARM_CORRUPT,
        };
        store.apply_entry(entry(2, alarm(1))).unwrap();
        for (i, cmd) in [
            put("b"),
            Command::Compact { revision: 2 },
            Command::LeaseGrant { id: 1, ttl: 10 },
            Command::LeaseRevoke { id: 1 },
            Command::AsUser {
                user: None,
                cmd: Box::new(put("b")),
            },
        ]
        .into_iter()
        .enumerate()
        {
            let (a, _) = store.apply_entry(entry(3 + i as u64, cmd)).unwrap();
            assert_eq!(a.output.unwrap_err(), KvError::Corrupt);
        }
        assert_eq!(store.state().revs.current, 2, "nothing was written");
        assert_eq!(store.state().applied, Some(log_id(7)));
        store.apply_entry(entry(8, alarm(2))).unwrap();
        let (a, _) = store.apply_entry(entry(9, put("b"))).unwrap();
        assert!(a.output.is_ok());
        assert_eq!(store.state().revs.current, 3);
    }
}
