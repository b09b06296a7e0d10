//! The auth store in the state machine: persisted with the applied index, reloaded on open,
//! carried by snapshots, and every client command checked again when it is applied.

use std::time::Instant;

use openraft::EntryPayload;
use proto::etcdserverpb::PutRequest;

use super::super::db::DataDir;
use super::super::snapshot;
use super::Store;
use crate::auth::password::hash_with;
use crate::auth::perms::{Perm, PermType};
use crate::auth::store::ROOT;
use crate::auth::token::{self, Lookup};
use crate::auth::AuthOp;
use crate::error::KvError;
use crate::mvcc::txn;
use crate::raft::types::{Command, Entry, LogId, Output, Pb};

fn entry(index: u64, cmd: Command) -> Entry {
    Entry {
        log_id: LogId::new(crate::raft::types::leader(1, 1), index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn open(dir: &std::path::Path) -> std::sync::Arc<Store> {
    Store::open(DataDir::new(dir).open_db().unwrap(), 16).unwrap()
}

/// root, alice with role app (readwrite on app/), auth enabled: entries 1..=8.
fn setup(store: &Store) {
    let pw = || Some(hash_with(b"pw", 1).unwrap());
    let ops = vec![
        AuthOp::UserAdd {
            name: ROOT.into(),
            password: pw(),
        },
        AuthOp::UserGrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        },
        AuthOp::UserAdd {
            name: "alice".into(),
            password: pw(),
        },
        AuthOp::RoleAdd { name: "app".into() },
        AuthOp::RoleGrantPermission {
            name: "app".into(),
            perm: Perm {
                kind: PermType::ReadWrite,
                key: b"app/".to_vec(),
                range_end: b"app0".to_vec(),
            },
        },
        AuthOp::UserGrantRole {
            user: "alice".into(),
            role: "app".into(),
        },
        AuthOp::Enable,
    ];
    for (i, op) in ops.into_iter().enumerate() {
        let (a, _) = store
            .apply_entry(entry(i as u64 + 1, Command::Auth(op)))
            .unwrap();
        a.output.unwrap();
    }
}

fn put_as(user: Option<&str>, key: &str) -> Command {
    Command::AsUser {
        user: user.map(str::to_string),
        cmd: Box::new(Command::Txn(Pb(txn::put_as_txn(PutRequest {
            key: key.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })))),
    }
}

#[test]
fn the_auth_store_survives_a_restart_and_travels_in_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    setup(&store);
    let auth = store.auth();
    assert!(auth.enabled);
    assert_eq!(auth.user("alice").unwrap().roles, vec!["app".to_string()]);
    drop(store);

    let store = open(dir.path());
    assert_eq!(store.auth(), auth, "reloaded from the database");

    let file = dir.path().join("snap.bin");
    snapshot::write(&store.db, &store.consistent_snapshot(), &file).unwrap();
    let other = tempfile::tempdir().unwrap();
    let fresh = open(other.path());
    assert!(!fresh.auth().enabled);
    snapshot::load(&fresh.db, &file).unwrap();
    fresh.reload().unwrap();
    assert_eq!(fresh.auth(), auth, "installed from a snapshot");
}

#[test]
fn client_commands_are_checked_again_when_applied() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    setup(&store);
    let (a, _) = store
        .apply_entry(entry(10, put_as(Some("alice"), "app/x")))
        .unwrap();
    assert!(matches!(a.output, Ok(Output::Txn(_))));
    let (a, _) = store
        .apply_entry(entry(11, put_as(Some("alice"), "other")))
        .unwrap();
    assert_eq!(a.output.unwrap_err(), KvError::PermissionDenied);
    let (a, _) = store.apply_entry(entry(12, put_as(None, "app/y"))).unwrap();
    assert_eq!(a.output.unwrap_err(), KvError::UserEmpty);
    let revoke = AuthOp::UserRevokeRole {
        name: "alice".into(),
        role: "app".into(),
    };
    // Management needs the root role at apply too.
    let as_alice = Command::AsUser {
        user: Some("alice".into()),
        cmd: Box::new(Command::Auth(revoke.clone())),
    };
    let (a, _) = store.apply_entry(entry(14, as_alice)).unwrap();
    assert_eq!(a.output.unwrap_err(), KvError::PermissionDenied);
    let as_root = Command::AsUser {
        user: Some(ROOT.into()),
        cmd: Box::new(Command::Auth(revoke)),
    };
    store
        .apply_entry(entry(15, as_root))
        .unwrap()
        .0
        .output
        .unwrap();
    let (a, _) = store
        .apply_entry(entry(16, put_as(Some("alice"), "app/x")))
        .unwrap();
    assert_eq!(a.output.unwrap_err(), KvError::PermissionDenied);
    assert_eq!(
        store.revisions().current,
        2,
        "only the first put was applied"
    );
}

#[test]
fn authenticate_registers_the_token_under_the_entry_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    setup(&store);
    let prefix = token::new_prefix().unwrap();
    let op = AuthOp::Authenticate {
        name: "alice".into(),
        token: token::digest_of(&prefix),
        checked_revision: store.auth().revision,
    };
    let (a, _) = store.apply_entry(entry(20, Command::Auth(op))).unwrap();
    assert!(matches!(a.output, Ok(Output::Authenticated { index: 20 })));
    let t = token::format(&prefix, 20);
    assert_eq!(
        store.tokens.lookup(&t, Instant::now()),
        Lookup::User("alice".into())
    );
    // A new password revokes the user's tokens on every member.
    let op = AuthOp::UserChangePassword {
        name: "alice".into(),
        password: hash_with(b"new", 1).unwrap(),
    };
    store
        .apply_entry(entry(21, Command::Auth(op)))
        .unwrap()
        .0
        .output
        .unwrap();
    assert_eq!(
        store.tokens.lookup(&t, Instant::now()),
        Lookup::Unknown { index: 20 }
    );
}
