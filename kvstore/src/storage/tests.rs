//! The RocksDB MVCC store against the in-memory model: the same Txns give the same
//! responses, changes, ranges at every retained revision and history, before and after
//! physical compaction; HashKV does not depend on compaction progress.

use proto::etcdserverpb::request_op::Request;
use proto::etcdserverpb::{DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest};
use rocksdb::WriteBatch;

use super::db::DataDir;
use super::mvcc_store::{compact_physically, write_changes, View};
use crate::mvcc::memory::MemStore;
use crate::mvcc::{range, txn, Revisions};

/// A small deterministic generator, so a failure replays exactly.
struct Lcg(u64);
impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
    fn key(&mut self) -> Vec<u8> {
        // Include a NUL byte in some keys to exercise the escaping.
        match self.next(3) {
            0 => format!("k{:02}", self.next(20)).into_bytes(),
            1 => format!("k{:02}\0x", self.next(20)).into_bytes(),
            _ => format!("j{:02}", self.next(5)).into_bytes(),
        }
    }
}

fn op(r: &mut Lcg, step: u64) -> RequestOp {
    let request = match r.next(4) {
        0 | 1 => Request::RequestPut(PutRequest {
            key: r.key(),
            value: format!("v{step}").into_bytes(),
            prev_kv: true,
            ..Default::default()
        }),
        2 => {
            let a = r.key();
            let mut b = a.clone();
            b.push(r.next(200) as u8);
            Request::RequestDeleteRange(DeleteRangeRequest {
                key: a,
                range_end: b,
                prev_kv: true,
            })
        }
        _ => Request::RequestDeleteRange(DeleteRangeRequest {
            key: r.key(),
            ..Default::default()
        }),
    };
    RequestOp {
        request: Some(request),
    }
}

fn ranges(r: &mut Lcg, revs: Revisions) -> Vec<RangeRequest> {
    let mut out = Vec::new();
    for _ in 0..20 {
        let rev = revs.compacted.max(1)
            + r.next((revs.current - revs.compacted.max(1) + 1) as u64) as i64;
        let key = r.key();
        let range_end = match r.next(3) {
            0 => Vec::new(),
            1 => vec![0],
            _ => b"k10".to_vec(),
        };
        out.push(RangeRequest {
            key,
            range_end,
            revision: rev,
            limit: r.next(4) as i64,
            count_only: r.next(5) == 0,
            ..Default::default()
        });
    }
    out
}

#[test]
fn rocksdb_store_matches_the_in_memory_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = DataDir::new(dir.path()).open_db().unwrap();
    let mut model = MemStore::new();
    let mut revs = model.revs;
    let mut r = Lcg(7);
    let mut compacted_at = Vec::new();
    for step in 0..600u64 {
        let ops: Vec<RequestOp> = (0..1 + r.next(3)).map(|_| op(&mut r, step)).collect();
        let t = TxnRequest {
            success: ops,
            ..Default::default()
        };
        if crate::mvcc::validate::txn(&t, 128).is_err() {
            continue;
        }
        let want = txn::execute(&model, model.revs, &t).unwrap();
        let got = txn::execute(&View::new(&db), revs, &t).unwrap();
        assert_eq!(got.response, want.response, "step {step}");
        assert_eq!(got.changes, want.changes, "step {step}");
        model.commit(&want);
        if !got.changes.is_empty() {
            let mut batch = WriteBatch::default();
            write_changes(&db, &mut batch, &got.changes, got.revision);
            db.write(batch).unwrap();
        }
        revs.current = got.revision;

        if step % 100 == 99 {
            // Compact somewhere in the middle of what is retained; hashes of retained
            // revisions must not move when the old versions are physically removed.
            let target = revs.compacted.max(1) + (revs.current - revs.compacted.max(1)) / 2;
            let before = View::new(&db).hash(target, revs.current).unwrap();
            revs.compacted = target;
            model.revs.compacted = target;
            compact_physically(&db, target).unwrap();
            assert_eq!(
                View::new(&db).hash(target, revs.current).unwrap(),
                before,
                "hash moved by compaction"
            );
            compacted_at.push(target);
        }
        if step % 25 == 0 {
            for q in ranges(&mut r, revs) {
                let want = range::execute(&model, revs, &q, None);
                let got = range::execute(&View::new(&db), revs, &q, None);
                assert_eq!(got, want, "range {q:?} at step {step}");
            }
        }
    }
    assert!(!compacted_at.is_empty());

    // History from the compaction point on is exactly the model's changes.
    let from = revs.compacted;
    let history = View::new(&db)
        .history(from, revs.current, usize::MAX)
        .unwrap();
    for e in &history {
        let at = range::execute(
            &model,
            revs,
            &RangeRequest {
                key: e.kv.key.clone(),
                revision: e.revision,
                ..Default::default()
            },
            None,
        )
        .unwrap();
        match e.kind {
            crate::mvcc::ChangeKind::Put => assert_eq!(at.kvs.first(), Some(&e.kv)),
            crate::mvcc::ChangeKind::Delete => assert!(at.kvs.is_empty()),
        }
    }
    assert!(history.windows(2).all(|w| w[0].revision <= w[1].revision));
}

fn log_id(index: u64) -> crate::raft::types::LogId {
    crate::raft::types::LogId::new(crate::raft::types::leader(1, 1), index)
}

/// `entries` as openraft hands them to the state machine, with no one waiting on them.
fn stream(
    entries: Vec<crate::raft::types::Entry>,
) -> impl futures::Stream<
    Item = Result<
        openraft::storage::EntryResponder<crate::raft::types::TypeConfig>,
        std::io::Error,
    >,
> + Unpin {
    futures::stream::iter(entries.into_iter().map(|e| Ok((e, None))))
}

fn put(k: &str) -> crate::raft::types::Command {
    let req = PutRequest {
        key: k.into(),
        value: b"v".to_vec(),
        ..Default::default()
    };
    crate::raft::types::Command::Txn(crate::raft::types::Pb(txn::put_as_txn(req)))
}

#[tokio::test]
async fn applied_state_and_revisions_survive_reopening() {
    use openraft::storage::RaftStateMachine;
    use openraft::EntryPayload;

    use crate::raft::types::Entry;

    use super::state_machine::{StateMachine, Store};

    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    let before = {
        let db = data.open_db().unwrap();
        let store = Store::open(db, 16).unwrap();
        let mut sm = StateMachine::new(store.clone(), data.snap_dir());
        let entries = vec![
            Entry {
                log_id: log_id(1),
                payload: EntryPayload::Blank,
            },
            Entry {
                log_id: log_id(2),
                payload: EntryPayload::Normal(put("a")),
            },
            Entry {
                log_id: log_id(3),
                payload: EntryPayload::Normal(put("b")),
            },
        ];
        sm.apply(stream(entries)).await.unwrap();
        let st = store.state();
        (st.applied, st.revs)
    };
    assert_eq!(before.0, Some(log_id(3)));
    assert_eq!(before.1.current, 3);
    let db = data.open_db().unwrap();
    let store = Store::open(db, 16).unwrap();
    let st = store.state();
    assert_eq!((st.applied, st.revs), before);
}

#[tokio::test]
async fn a_batch_entry_interrupted_by_a_crash_is_resumed_not_repeated() {
    use openraft::storage::RaftStateMachine;
    use openraft::EntryPayload;

    use crate::raft::types::Entry;
    use rocksdb::WriteBatch;

    use super::db::{cf, encode, CF_META};
    use super::state_machine::{StateMachine, Store, KEY_APPLIED, KEY_PARTIAL};
    use crate::raft::types::Command;

    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path());
    {
        let db = data.open_db().unwrap();
        let store = Store::open(db.clone(), 16).unwrap();
        let mut sm = StateMachine::new(store.clone(), data.snap_dir());
        sm.apply(stream(vec![Entry {
            log_id: log_id(1),
            payload: EntryPayload::Blank,
        }]))
        .await
        .unwrap();
        // The crash: commands 0 and 1 of entry 2 were applied, command 2 was not.
        sm.apply(stream(vec![Entry {
            log_id: log_id(2),
            payload: EntryPayload::Normal(Command::Batch(vec![put("a"), put("b")])),
        }]))
        .await
        .unwrap();
        let mut b = WriteBatch::default();
        b.put_cf(cf(&db, CF_META), KEY_APPLIED, encode(&Some(log_id(1))));
        b.put_cf(cf(&db, CF_META), KEY_PARTIAL, encode(&(2u64, 1usize)));
        db.write(b).unwrap();
    }
    let db = data.open_db().unwrap();
    let store = Store::open(db, 16).unwrap();
    assert_eq!(store.state().applied, Some(log_id(1)));
    let mut sm = StateMachine::new(store.clone(), data.snap_dir());
    let full = Command::Batch(vec![put("a"), put("b"), put("c")]);
    sm.apply(stream(vec![Entry {
        log_id: log_id(2),
        payload: EntryPayload::Normal(full),
    }]))
    .await
    .unwrap();
    let st = store.state();
    assert_eq!(st.applied, Some(log_id(2)));
    assert_eq!(
        st.revs.current, 4,
        "a, b and c once each: revisions 2, 3, 4"
    );
    let (view, revs) = store.read_view();
    let all = range::execute(
        &view,
        revs,
        &RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(all.kvs.len(), 3);
    assert!(all.kvs.iter().all(|kv| kv.version == 1));
}

#[test]
fn the_reserved_batch_size_covers_what_the_changes_write() {
    use crate::mvcc::{Change, ChangeKind};
    use proto::mvccpb::KeyValue;
    let dir = tempfile::tempdir().unwrap();
    let db = DataDir::new(dir.path()).open_db().unwrap();
    // Keys of NUL bytes double when escaped: the worst case of the estimate.
    let changes: Vec<Change> = (0..100u8)
        .map(|i| Change {
            kind: if i % 2 == 0 {
                ChangeKind::Put
            } else {
                ChangeKind::Delete
            },
            kv: KeyValue {
                key: [vec![i], vec![0; 255]].concat(),
                value: vec![7; usize::from(i) * 10],
                lease: i64::from(i % 3),
                ..Default::default()
            },
            prev: None,
            prev_value_omitted: false,
        })
        .collect();
    let mut batch = WriteBatch::default();
    write_changes(&db, &mut batch, &changes, 9);
    let reserved = super::mvcc_store::batch_bytes(&changes);
    assert!(
        batch.size_in_bytes() <= reserved,
        "{} written, {reserved} reserved",
        batch.size_in_bytes()
    );
}
