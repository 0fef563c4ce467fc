//! The one-replica Raft catalog on RocksDB: durability across restarts,
//! snapshots and log purge, concurrent proposals, corrupt log entries, and
//! rejected commands as answers.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rocksdb::{DB, DBCompressionType, IteratorMode, Options};
use strata_tiering::catalog::{
    Applied, CatalogClient, Command, FileKey, FileState, Intent, LogEntry, Rejected, Sha256, State,
    Timestamp, Volume,
};
use strata_tiering::raft::{CatalogNode, CatalogOptions};
use tempfile::TempDir;

fn options() -> CatalogOptions {
    CatalogOptions {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
        ..CatalogOptions::default()
    }
}

async fn open(dir: &Path, options: CatalogOptions) -> CatalogNode {
    match CatalogNode::open(dir, options).await {
        Ok(node) => node,
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

fn entry(command: Command, at: u64) -> LogEntry {
    LogEntry {
        by: None,
        at: Timestamp::from_unix_nanos(at),
        command,
    }
}

fn volume(id: &str) -> Command {
    Command::RegisterVolume(Volume {
        id: id.into(),
        path: format!("/mnt/{id}"),
        labels: BTreeMap::from([("app".into(), "inspection".into())]),
    })
}

fn key(path: &str) -> FileKey {
    FileKey::new("vol-a", path)
}

fn intent(path: &str, c: u8) -> Command {
    Command::RecordIntent(Intent {
        key: key(path),
        move_id: u64::from(c),
        size: 100 * u64::from(c),
        mtime_ns: 1_000 + i64::from(c),
        ino: 42,
        dev: 7,
        ctime_ns: 2_000 + i64::from(c),
        sha256: Sha256([c; 32]),
        owner: None,
        lake_key: format!("site/vol-a/{path}/{c:02x}"),
        policy: "cold-images".into(),
        rule: "older-than-7d".into(),
    })
}

fn uploaded(path: &str, c: u8) -> Command {
    Command::MarkUploaded {
        key: key(path),
        move_id: u64::from(c),
        sha256: Sha256([c; 32]),
    }
}

fn archived(path: &str, c: u8) -> Command {
    Command::MarkArchived {
        key: key(path),
        move_id: u64::from(c),
        sha256: Sha256([c; 32]),
        size: 100 * u64::from(c),
        lake: Some("s3://lake/site-a".into()),
        verified_at: None,
    }
}

fn released(path: &str, c: u8) -> Command {
    Command::MarkReleased {
        key: key(path),
        move_id: u64::from(c),
        sha256: Sha256([c; 32]),
        size: 100 * u64::from(c),
        mtime_ns: 1_000 + i64::from(c),
        ino: 42,
        dev: 7,
        ctime_ns: 2_000 + i64::from(c),
    }
}

async fn propose(node: &CatalogNode, command: Command, at: u64) -> Result<Applied, Rejected> {
    match node.propose(entry(command, at)).await {
        Ok(answer) => answer,
        Err(e) => panic!("propose: {e}"),
    }
}

async fn changed(node: &CatalogNode, command: Command, at: u64) {
    let what = format!("{command:?}");
    match propose(node, command, at).await {
        Ok(Applied::Changed) => {}
        other => panic!("{what}: expected Changed, got {other:?}"),
    }
}

async fn snapshot_bytes(node: &CatalogNode) -> Vec<u8> {
    node.read(|s| s.to_snapshot())
        .await
        .expect("read the catalog")
}

/// A reopened replica's state equals the one before, except that the log
/// position may have moved on over a new leader's blank entry.
fn assert_same_state(before: &[u8], after: &[u8]) {
    let after_state = State::from_snapshot(after).expect("after: a valid snapshot");
    let mut expected = State::from_snapshot(before).expect("before: a valid snapshot");
    let (Some(was), Some(now)) = (expected.last_applied(), after_state.last_applied()) else {
        panic!("both states have applied entries");
    };
    assert!(
        now >= was,
        "the reopened replica went back from {was} to {now}"
    );
    expected.skip_to(now);
    assert!(
        expected.to_snapshot() == after,
        "the reopened catalog differs from the one before"
    );
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const CFS: [&str; 3] = ["log", "meta", "snapshot"];

/// RocksDB options for opening the closed store directly (this build of
/// RocksDB has no snappy, its default compression).
fn rocks_options() -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(DBCompressionType::Lz4);
    opts
}

/// The keys of the log column family of the closed store, as log indexes.
fn log_indexes(store: &Path) -> Vec<u64> {
    let db = DB::open_cf_for_read_only(&rocks_options(), store, CFS, false)
        .expect("open the closed store read-only");
    let cf = db.cf_handle("log").expect("log column family");
    db.iterator_cf(cf, IteratorMode::Start)
        .map(|item| {
            let (k, _) = item.expect("read a log key");
            u64::from_be_bytes(k.as_ref().try_into().expect("8-byte log key"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_restores_the_same_state_and_continues() {
    let tmp = TempDir::new().unwrap();
    let node = open(tmp.path(), options()).await;
    changed(&node, volume("vol-a"), 1).await;
    changed(&node, intent("a.jpg", 1), 10).await;
    changed(&node, intent("b.jpg", 2), 11).await;
    changed(&node, uploaded("a.jpg", 1), 20).await;
    changed(&node, archived("a.jpg", 1), 30).await;
    changed(
        &node,
        Command::PutPolicy {
            name: "cold-images".into(),
            spec:
                "name: cold-images\nselector: {volumes: [vol-a]}\nlake: {url: \"file:///lake\"}\n\
                   rules:\n  - name: old\n    modifiedBefore: 1d\n    action: copy\n"
                    .into(),
        },
        40,
    )
    .await;
    let before = snapshot_bytes(&node).await;
    let last_index = node.metrics().last_log_index;
    node.shutdown().await.expect("shutdown");
    drop(node);

    let node = open(tmp.path(), options()).await;
    assert_same_state(&before, &snapshot_bytes(&node).await);
    // The log goes on where it stopped, and the moves with it.
    changed(&node, released("a.jpg", 1), 50).await;
    assert_eq!(
        propose(&node, uploaded("a.jpg", 1), 60).await,
        Ok(Applied::Unchanged),
        "a late retry of an earlier step is a no-op"
    );
    changed(&node, uploaded("b.jpg", 2), 70).await;
    assert!(node.metrics().last_log_index > last_index);
    let states = node
        .read(|s| {
            (
                s.file(&key("a.jpg")).map(|r| r.state),
                s.file(&key("b.jpg")).map(|r| r.state),
            )
        })
        .await
        .unwrap();
    assert_eq!(
        states,
        (Some(FileState::Released), Some(FileState::Uploaded))
    );
    let before = snapshot_bytes(&node).await;
    node.shutdown().await.expect("shutdown");
    drop(node);

    let node = open(tmp.path(), options()).await;
    assert_same_state(&before, &snapshot_bytes(&node).await);
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_purge_the_log_and_restore_on_reopen() {
    let tmp = TempDir::new().unwrap();
    let opts = CatalogOptions {
        snapshot_every: 50,
        logs_kept_after_snapshot: 10,
        ..options()
    };
    let node = open(tmp.path(), opts.clone()).await;
    changed(&node, volume("vol-a"), 1).await;
    // 500 entries, 25 proposals in flight at a time.
    for chunk in 0..20u64 {
        let proposals = (0..25u64).map(|i| {
            let n = chunk * 25 + i;
            let path = format!("f{n:03}.bin");
            let node = &node;
            async move { changed(node, intent(&path, (n % 250 + 1) as u8), 100 + n).await }
        });
        futures::future::join_all(proposals).await;
    }
    let last = node.metrics().last_log_index.expect("a log");
    assert!(last >= 500, "500 entries and more in the log, got {last}");
    wait_for("a snapshot near the end of the log and a purge", || {
        let m = node.metrics();
        m.snapshot_index.is_some_and(|s| s + 50 > last) && m.purged_index.is_some()
    })
    .await;
    let metrics = node.metrics();
    let before = snapshot_bytes(&node).await;
    node.shutdown().await.expect("shutdown");
    drop(node);

    let store = tmp.path().join("catalog");
    let indexes = log_indexes(&store);
    let purged = metrics.purged_index.expect("purged");
    assert!(
        indexes.first().is_some_and(|&first| first == purged + 1),
        "the log starts after the purged index {purged}: {:?}",
        indexes.first()
    );
    assert!(
        indexes.len() < 100,
        "the purge removed the snapshotted entries: {} log keys remain",
        indexes.len()
    );

    let node = open(tmp.path(), opts).await;
    assert!(node.metrics().snapshot_index >= metrics.snapshot_index);
    assert_same_state(&before, &snapshot_bytes(&node).await);
    let files = node.read(|s| s.file_count()).await.unwrap();
    assert_eq!(files, 500);
    changed(&node, uploaded("f000.bin", 1), 1_000).await;
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_are_all_acknowledged() {
    let tmp = TempDir::new().unwrap();
    let node = Arc::new(open(tmp.path(), options()).await);
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let node = Arc::clone(&node);
            tokio::spawn(async move { propose(&node, volume(&format!("vol-{i:02}")), i).await })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.unwrap(), Ok(Applied::Changed), "proposal {i}");
    }
    let ids: Vec<String> = node
        .read(|s| s.volumes().map(|v| v.id.clone()).collect())
        .await
        .unwrap();
    let want: Vec<String> = (0..32).map(|i| format!("vol-{i:02}")).collect();
    assert_eq!(ids, want);
    node.shutdown().await.expect("shutdown");
}

/// Overwrites the log entry at `index` of the closed store with `value`.
fn overwrite_log_entry(store: &Path, index: u64, value: &[u8]) {
    let db = DB::open_cf(&rocks_options(), store, CFS).expect("open the closed store");
    let cf = db.cf_handle("log").expect("log column family");
    db.put_cf(cf, index.to_be_bytes(), value).expect("write");
    db.flush_wal(true).expect("sync");
}

fn read_log_entry(store: &Path, index: u64) -> Vec<u8> {
    let db = DB::open_cf_for_read_only(&rocks_options(), store, CFS, false)
        .expect("open the closed store read-only");
    let cf = db.cf_handle("log").expect("log column family");
    db.get_cf(cf, index.to_be_bytes())
        .expect("read")
        .expect("the entry exists")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_log_entry_stops_the_replica_naming_its_index() {
    let tmp = TempDir::new().unwrap();
    let node = open(tmp.path(), options()).await;
    changed(&node, volume("vol-a"), 1).await;
    changed(&node, intent("a.jpg", 1), 10).await;
    changed(&node, intent("b.jpg", 2), 11).await;
    changed(&node, uploaded("a.jpg", 1), 20).await;
    let last = node.metrics().last_log_index.expect("a log");
    node.shutdown().await.expect("shutdown");
    drop(node);
    let store = tmp.path().join("catalog");

    // Garbage in the middle of the log: the replica refuses to start.
    let corrupt = last - 2;
    let good = read_log_entry(&store, corrupt);
    overwrite_log_entry(&store, corrupt, b"\x00garbage\xff");
    let err = CatalogNode::open(tmp.path(), options())
        .await
        .expect_err("a corrupt log entry must stop the replica")
        .to_string();
    assert!(
        err.contains(&format!("log entry at index {corrupt} does not decode")),
        "the error names the corrupt index {corrupt}: {err}"
    );

    // A valid entry under the wrong index is refused too.
    overwrite_log_entry(&store, corrupt, &read_log_entry(&store, last));
    let err = CatalogNode::open(tmp.path(), options())
        .await
        .expect_err("a misplaced log entry must stop the replica")
        .to_string();
    assert!(
        err.contains(&format!(
            "log entry stored at index {corrupt} is the entry of index {last}"
        )),
        "the error names the misplaced index {corrupt}: {err}"
    );

    // Put back, the log opens again with the state it had.
    overwrite_log_entry(&store, corrupt, &good);
    let node = open(tmp.path(), options()).await;
    let state = node
        .read(|s| s.file(&key("a.jpg")).map(|r| r.state))
        .await
        .unwrap();
    assert_eq!(state, Some(FileState::Uploaded));
    node.shutdown().await.expect("shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_command_is_an_answer_not_an_error() {
    let tmp = TempDir::new().unwrap();
    let node = open(tmp.path(), options()).await;
    assert!(
        matches!(
            propose(&node, intent("a.jpg", 1), 1).await,
            Err(Rejected::UnknownVolume { volume }) if volume == "vol-a"
        ),
        "an intent on an unregistered volume is refused"
    );
    changed(&node, volume("vol-a"), 2).await;
    assert!(
        matches!(
            propose(&node, uploaded("a.jpg", 1), 3).await,
            Err(Rejected::UnknownFile { key: k }) if k == key("a.jpg")
        ),
        "an upload of a file without an intent is refused"
    );
    changed(&node, intent("a.jpg", 1), 4).await;
    assert!(matches!(
        propose(&node, released("a.jpg", 1), 5).await,
        Err(Rejected::NotArchived { .. })
    ));
    // The refusals changed nothing, and the node goes on.
    let state = node
        .read(|s| s.file(&key("a.jpg")).map(|r| r.state))
        .await
        .unwrap();
    assert_eq!(state, Some(FileState::Intent));
    changed(&node, uploaded("a.jpg", 1), 6).await;
    node.shutdown().await.expect("shutdown");
}

/// The replica's Raft state is on /metrics, read at scrape time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_metrics_show_the_replica() {
    let tmp = TempDir::new().unwrap();
    // A snapshot after every 2 entries: the 3 writes below make at least one.
    let node = Arc::new(
        open(
            tmp.path(),
            CatalogOptions {
                snapshot_every: 2,
                ..options()
            },
        )
        .await,
    );
    let mut registry = prometheus_client::registry::Registry::with_prefix("strata");
    strata_tiering::raft::CatalogCollector::register(node.clone(), &mut registry);
    let scrape = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    };
    // Open returns once the replica leads; its own first entries may still
    // be on their way to being applied (CI once saw no applied index yet).
    wait_for("the replica's first entries applied", || {
        let m = node.metrics();
        m.is_leader && m.applied_index.is_some() && m.applied_index == m.last_log_index
    })
    .await;
    let before = node.metrics().applied_index.unwrap();
    for i in 0..3 {
        propose(&node, volume(&format!("vol-{i}")), 10 + i)
            .await
            .unwrap();
    }
    // openraft publishes its metrics a moment after it answers a write, and
    // builds snapshots in the background.
    let applied = format!("strata_catalog_applied_index {}", before + 3);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut text = scrape();
    while !(text.contains(&applied) && node.metrics().snapshots_built > 0)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
        text = scrape();
    }
    for want in [
        "strata_catalog_is_leader 1".to_owned(),
        "strata_catalog_leader_id 1".to_owned(),
        "strata_catalog_stopped 0".to_owned(),
        applied.clone(),
        format!("strata_catalog_committed_index {}", before + 3),
        "# TYPE strata_catalog_replication_lag_entries gauge".to_owned(),
        "# TYPE strata_catalog_snapshots_built counter".to_owned(),
        "strata_catalog_snapshots_installed_total 0".to_owned(),
        "strata_catalog_role{role=\"leader\"} 1".to_owned(),
        "# TYPE strata_catalog_apply_duration_seconds histogram".to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want:?}:\n{text}");
    }
    // Every entry applied is timed: the three writes at least.
    let applies: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("strata_catalog_apply_duration_seconds_count "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no apply count:\n{text}"));
    assert!(applies >= 3, "{applies} applies timed:\n{text}");
    let built = node.metrics().snapshots_built;
    assert!(
        built > 0,
        "no snapshot built after 3 writes at snapshot_every 2"
    );
    assert!(
        text.contains(&format!("strata_catalog_snapshots_built_total {built}")),
        "{text}"
    );
    // A one-member group has no follower to lag.
    assert!(
        !text.contains("strata_catalog_replication_lag_entries{"),
        "{text}"
    );
    node.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_waits_through_commits_and_returns_once_the_replica_stops() {
    let tmp = TempDir::new().unwrap();
    let node = Arc::new(open(tmp.path(), options()).await);
    let watcher = {
        let node = node.clone();
        tokio::spawn(async move { node.stopped().await })
    };
    changed(&node, volume("vol-a"), 1).await;
    for i in 0..20u8 {
        changed(&node, intent(&format!("f{i}.jpg"), i), 10 + u64::from(i)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !watcher.is_finished(),
        "stopped() returned while the replica ran"
    );
    node.shutdown().await.expect("shutdown");
    let why = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("stopped() did not return after the replica stopped")
        .unwrap();
    assert!(!why.is_empty());
}
