//! The data directory's format version is written once and checked at every open.

use palaver_storage::{Durability, FORMAT_VERSION, StorageError, Store};

#[test]
fn a_fresh_directory_gets_the_current_format_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), Durability::Fsync).unwrap());
    drop(Store::open(dir.path(), Durability::Buffered).unwrap());
    assert_eq!(FORMAT_VERSION, 3);
}

#[test]
fn users_are_unique_by_username() {
    use palaver_protocol::{UserId, Username};
    use palaver_storage::UserRecord;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Durability::Fsync).unwrap();
    let alice = UserRecord {
        user_id: UserId::parse("u_1").unwrap(),
        username: "alice".into(),
        password_hash: "x".into(),
        created_ms: 1,
        bot: false,
    };
    store.create_user(&alice).unwrap();
    let again = UserRecord { user_id: UserId::parse("u_2").unwrap(), ..alice.clone() };
    assert!(matches!(store.create_user(&again), Err(StorageError::UsernameTaken)));
    let found = store.user_by_name(&Username::parse("ALICE").unwrap()).unwrap();
    assert_eq!(found, Some(alice));
}
