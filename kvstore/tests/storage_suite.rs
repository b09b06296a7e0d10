//! openraft's storage conformance suite, run against the RocksDB log store and state machine.

use kvstore::raft::types::{StorageError, TypeConfig};
use kvstore::storage::db::DataDir;
use kvstore::storage::log_store::LogStore;
use kvstore::storage::state_machine::{StateMachine, Store};
use openraft::testing::log::{StoreBuilder, Suite};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = DataDir::new(dir.path());
        let db = data.open_db().expect("open db");
        let store = Store::open(db.clone(), 16).expect("open store");
        Ok((
            dir,
            LogStore::new(db),
            StateMachine::new(store, data.snap_dir()),
        ))
    }
}

#[tokio::test]
async fn openraft_storage_suite_passes_on_rocksdb() {
    Suite::test_all(RocksBuilder).await.expect("storage suite");
}
