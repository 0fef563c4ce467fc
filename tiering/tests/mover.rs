//! The mover end to end: a volume directory, a catalog, and a lake (a local
//! directory, or moto_server started and stopped by PID): moves compared
//! object by object, copy, hot and changed files, the lake taken away and
//! brought back, recall, the bandwidth limit, and kill -9 between any two
//! steps with the durable catalog.

#[path = "common/data.rs"]
mod data;
#[path = "common/moto.rs"]
mod moto;
#[path = "common/movers.rs"]
mod movers;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use movers::{DAY, MIB, RecordingCatalog, TestLake, TestVolume, policy, sha};
use prometheus_client::registry::Registry;
use strata_tiering::catalog::{
    Applied, CatalogClient, CatalogError, Command, FileFilter, FileKey, FileRecord, FileState,
    LogEntry, MemoryCatalog, Rejected, State,
};
use strata_tiering::metrics::TieringMetrics;
use strata_tiering::mover::{Backoff, Mover, MoverOptions, RecallProgress, RunGoal};
use strata_tiering::scan::ScanOptions;

fn options() -> MoverOptions {
    MoverOptions::default()
        .scan(ScanOptions::default().settle(Duration::ZERO).workers(2))
        .backoff(Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(2),
        })
}

fn metrics_text(m: &TieringMetrics) -> String {
    let mut registry = Registry::with_prefix("strata");
    m.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64
}

async fn record(c: &RecordingCatalog, volume: &str, path: &str) -> Option<FileRecord> {
    let key = FileKey::new(volume, path);
    c.state(move |s| s.file(&key).cloned()).await
}

async fn records(c: &RecordingCatalog) -> Vec<FileRecord> {
    c.state(|s: &State| {
        s.files(&FileFilter::default(), None, usize::MAX)
            .items
            .into_iter()
            .cloned()
            .collect()
    })
    .await
}

/// Every cold file is gone locally, recorded `Released`, and its object
/// holds exactly its bytes; every other file is untouched.
async fn assert_moved(c: &RecordingCatalog, lake: &TestLake, v: &TestVolume, cold: &[&str]) {
    for (rel, (data, mtime)) in &v.files {
        let rec = record(c, &v.volume.id, rel).await;
        if !cold.contains(&rel.as_str()) {
            assert!(v.intact(rel), "{rel}: a hot file was touched");
            assert!(rec.is_none(), "{rel}: a hot file has a record");
            continue;
        }
        let rec = rec.unwrap_or_else(|| panic!("{rel}: no record"));
        assert!(!v.exists(rel), "{rel}: still local");
        assert_eq!(rec.state, FileState::Released, "{rel}");
        assert_eq!(rec.sha256.0, sha(data), "{rel}: recorded hash");
        assert_eq!(rec.size, data.len() as u64, "{rel}: recorded size");
        assert_eq!(rec.mtime_ns, nanos(*mtime), "{rel}: recorded mtime");
        let object = lake
            .object(&rec.lake_key)
            .await
            .unwrap_or_else(|| panic!("{rel}: no object {}", rec.lake_key));
        assert_eq!(sha(&object), sha(data), "{rel}: object sha256");
        assert!(object == *data, "{rel}: object bytes differ");
    }
}

async fn moves_cold_files(lake: TestLake) {
    let mut v = TestVolume::new("vol-1");
    v.add("a/old-1.jpg", 100 * 1024, 30 * DAY);
    v.add("a/empty.jpg", 0, 30 * DAY);
    v.add("b/c/big.bin", 12 * MIB, 30 * DAY);
    for i in 0..20 {
        v.add(&format!("small/{i:02}.dat"), 16 * 1024, 10 * DAY);
    }
    v.add("a/hot.jpg", 4096, Duration::from_secs(3600));
    v.add("hot/fresh.log", 10, Duration::ZERO);
    let cold: Vec<&str> = v
        .files
        .keys()
        .map(String::as_str)
        .filter(|p| !p.contains("hot"))
        .collect();

    let catalog = RecordingCatalog::default();
    // Long enough that the fresh uploads of a directory all join one listing.
    let options = options().confirm_window(Duration::from_secs(3));
    let mover = Mover::new(catalog.clone(), options);
    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let report = mover.run_policy("cold", &v.volume).await.unwrap();
    let n = cold.len() as u64;
    assert_eq!(report.scanned, n + 2, "{report:?}");
    assert_eq!(report.candidates, n, "{report:?}");
    assert_eq!(report.intents, n, "{report:?}");
    assert_eq!(report.drain.uploaded, n, "{report:?}");
    assert_eq!(report.drain.archived, n, "{report:?}");
    assert_eq!(report.drain.released, n, "{report:?}");
    assert_eq!(
        report.drain.failed + report.drain.abandoned,
        0,
        "{report:?}"
    );
    assert_moved(&catalog, &lake, &v, &cold).await;

    let runs = catalog
        .state(|s| s.last_runs(5).into_iter().cloned().collect::<Vec<_>>())
        .await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].id.as_str(), runs[0].files),
        (report.run_id.as_str(), n)
    );

    // Nothing left to do: the hot files stay, the moved ones are gone.
    let again = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!((again.candidates, again.intents), (0, 0), "{again:?}");

    let text = metrics_text(mover.metrics());
    for want in [
        format!(r#"strata_tiering_releases_total{{policy="cold"}} {n}"#),
        format!(r#"strata_tiering_upload_objects_total{{policy="cold"}} {n}"#),
        r#"strata_tiering_lake_up{policy="cold"} 1"#.to_owned(),
        "strata_tiering_backlog_files 0".to_owned(),
        r#"strata_tiering_verifications_total{result="ok"}"#.to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want}:\n{text}");
    }
    // An S3 lake confirms the 20 fresh files of small/ with a listing; the
    // others (a directory of two, a multipart upload) are verified one by one.
    let by = |how: &str| {
        let series = format!(r#"strata_tiering_verified_by_total{{by="{how}"}} "#);
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0, |v| v.parse::<u64>().unwrap())
    };
    let (listing, head, read_back) = (by("listing"), by("head"), by("read_back"));
    assert_eq!(listing + head + read_back, n, "{text}");
    if lake.lake.lists() {
        assert_eq!((listing, head, read_back), (20, n - 21, 1), "{text}");
    } else {
        assert_eq!(read_back, n, "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_moves_cold_files_to_local_lake() {
    moves_cold_files(TestLake::local()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_moves_cold_files_to_s3() {
    moves_cold_files(TestLake::s3()).await;
}

/// Past the high watermark a run frees what it must, least recently used
/// first: of six cold 100 KiB files, the three oldest (by the later of
/// atime and mtime) cover 250 KiB; the rest stay, and so does a cold file
/// that only a `copy` rule picks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_watermark_run_frees_oldest_first_until_the_goal() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    // (path, days since last use); a read 9 days ago makes `read-recently` young.
    let files = [
        ("d/40.bin", 40),
        ("a/50.bin", 50),
        ("read-recently.bin", 9),
        ("c/30.bin", 30),
        ("b/45.bin", 45),
        ("e/20.bin", 20),
    ];
    for (p, _) in files {
        v.add(p, 100 * 1024, 60 * DAY);
    }
    for (p, days) in files {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(v.path(p))
            .unwrap();
        let atime = SystemTime::now() - days * DAY;
        let mtime = if p == "read-recently.bin" {
            SystemTime::now() - 60 * DAY
        } else {
            atime
        };
        f.set_times(
            std::fs::FileTimes::new()
                .set_accessed(atime)
                .set_modified(mtime),
        )
        .unwrap();
    }
    v.add("logs/kept.log", 300 * 1024, 90 * DAY);
    let extra =
        "  - name: logs\n    include: [\"logs/**\"]\n    modifiedBefore: 7d\n    action: copy\n";
    let yaml = format!(
        "name: wm\nlake: {{url: \"{}\"}}\nwatermarks: {{high: 85%, low: 70%}}\nrules:\n  - name: old\n    include: [\"**/*.bin\"]\n    modifiedBefore: 7d\n    action: move\n{extra}",
        lake.url
    );
    let p = strata_tiering::policy::parse_policy(&yaml).unwrap();
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(p, lake.lake.clone());
    let report = mover
        .run_policy_for("wm", &v.volume, RunGoal::FreeBytes(250 * 1024))
        .await
        .unwrap();
    assert_eq!(report.candidates, 3, "{report:?}");
    assert_eq!(report.drain.released, 3, "{report:?}");
    for gone in ["a/50.bin", "b/45.bin", "d/40.bin"] {
        assert!(!v.exists(gone), "{gone} is among the oldest");
    }
    for kept in ["c/30.bin", "e/20.bin", "read-recently.bin", "logs/kept.log"] {
        assert!(v.intact(kept), "{kept} stays");
    }
    // Only the selected files got intents.
    let order: Vec<String> = catalog
        .commands()
        .iter()
        .filter_map(|c| match c {
            Command::RecordIntent(i) => Some(i.key.path.clone()),
            _ => None,
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(sorted, ["a/50.bin", "b/45.bin", "d/40.bin"], "{order:?}");

    // Nothing to free: nothing moves.
    let none = mover
        .run_policy_for("wm", &v.volume, RunGoal::FreeBytes(0))
        .await
        .unwrap();
    assert_eq!((none.candidates, none.intents), (0, 0), "{none:?}");
}

/// An object under the file version's key whose bytes are wrong though its
/// size and checksum metadata are right (a torn write, a lake that altered
/// the bytes) is taken as present, fails verification, is replaced, and
/// only the verified copy lets the local file go. (A local-directory lake
/// keeps no metadata: there, wrong bytes are a conflict and stay one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_replaces_a_corrupt_object_before_releasing() {
    let lake = TestLake::s3();
    let mut v = TestVolume::new("vol-1");
    v.add("x.bin", 64 * 1024, 30 * DAY);
    let data = v.files["x.bin"].0.clone();
    let hex: String = sha(&data).iter().map(|b| format!("{b:02x}")).collect();
    let key = format!("vol-1/x.bin.{hex}");
    let (store, path) = lake.lake.raw(&key).unwrap();
    let mut torn = data.clone();
    torn[1000] ^= 0xff;
    let attributes = object_store::Attributes::from_iter([(
        object_store::Attribute::Metadata(strata_tiering::lake::SHA256_METADATA_KEY.into()),
        object_store::AttributeValue::from(hex.clone()),
    )]);
    let opts = object_store::PutOptions {
        attributes,
        ..Default::default()
    };
    store.put_opts(&path, torn.into(), opts).await.unwrap();

    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let report = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!(report.drain.released, 1, "{report:?}");
    assert_eq!(
        lake.object(&key).await.unwrap(),
        data,
        "replaced by the real bytes"
    );
    let text = metrics_text(mover.metrics());
    assert!(
        text.contains(r#"strata_tiering_verifications_total{result="failed"} 1"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_copy_keeps_local_files() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    for name in ["a.dat", "b.dat", "c/d.dat"] {
        v.add(name, 64 * 1024, 20 * DAY);
    }
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("keep", &lake.url, "copy", ""), lake.lake.clone());
    let report = mover.run_policy("keep", &v.volume).await.unwrap();
    assert_eq!(
        (report.drain.archived, report.drain.released),
        (3, 0),
        "{report:?}"
    );
    for (rel, (data, _)) in &v.files {
        assert!(v.intact(rel), "{rel}");
        let rec = record(&catalog, "vol-1", rel).await.unwrap();
        assert_eq!(rec.state, FileState::Archived, "{rel}");
        assert!(lake.object(&rec.lake_key).await.unwrap() == *data, "{rel}");
    }
    // The next run finds them archived in this version: no new move.
    let again = mover.run_policy("keep", &v.volume).await.unwrap();
    assert_eq!((again.already_archived, again.intents), (3, 0), "{again:?}");
    // An archived file that went missing locally can be recalled.
    std::fs::remove_file(v.path("c/d.dat")).unwrap();
    let r = mover.recall("vol-1", "c/*", |_| {}).await.unwrap();
    assert_eq!((r.matched, r.recalled), (1, 1), "{r:?}");
    assert!(v.intact("c/d.dat"));
    let rec = record(&catalog, "vol-1", "c/d.dat").await.unwrap();
    assert_eq!(rec.state, FileState::Recalled);
}

/// A catalog whose commit of one file's intent lags behind the others'
/// (as through a leader elsewhere, or under load): the intent carries an
/// earlier time than intents that commit before it.
#[derive(Clone)]
struct LaggingIntent {
    inner: RecordingCatalog,
    path: &'static str,
    lag: Duration,
}

impl CatalogClient for LaggingIntent {
    async fn propose(&self, entry: LogEntry) -> Result<Result<Applied, Rejected>, CatalogError> {
        if let Command::RecordIntent(i) = &entry.command
            && i.key.path == self.path
        {
            tokio::time::sleep(self.lag).await;
        }
        self.inner.propose(entry).await
    }

    async fn read<T, F>(&self, read: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> T + Send + 'static,
    {
        self.inner.read(read).await
    }
}

/// The run's drain moves every file whose intent it recorded, even one whose
/// intent committed after the drain had passed its place in the backlog's
/// time order (it was left to a later drain before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_run_drains_an_intent_that_commits_out_of_order() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    for i in 0..48 {
        v.add(&format!("f{i:02}.dat"), 4 * 1024, 20 * DAY);
    }
    let catalog = LaggingIntent {
        inner: RecordingCatalog::default(),
        path: "f00.dat",
        lag: Duration::from_millis(700),
    };
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let report = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!(report.intents, 48, "{report:?}");
    assert_eq!(report.drain.released, 48, "{report:?}");
    let cold: Vec<&str> = v.files.keys().map(String::as_str).collect();
    assert_moved(&catalog.inner, &lake, &v, &cold).await;
}

/// A policy turned from copy to move: the archived files are released by the
/// next drain, except one that changed since hashing (abandoned, kept) and
/// one held open by a writer (kept until it is closed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_changed_or_open_file_is_kept() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    for name in ["changed.dat", "open.dat", "idle.dat"] {
        v.add(name, 32 * 1024, 20 * DAY);
    }
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("p", &lake.url, "copy", ""), lake.lake.clone());
    mover.run_policy("p", &v.volume).await.unwrap();

    // Changed after hashing, yet still old enough to be cold.
    let changed = v.path("changed.dat");
    let mut data = std::fs::read(&changed).unwrap();
    data.extend_from_slice(b"one more line");
    std::fs::write(&changed, &data).unwrap();
    movers::set_mtime(&changed, SystemTime::now() - 15 * DAY);
    let writer = std::fs::OpenOptions::new()
        .append(true)
        .open(v.path("open.dat"))
        .unwrap();

    mover.add_policy(policy("p", &lake.url, "move", ""), lake.lake.clone());
    let d = mover.drain(SystemTime::now()).await.unwrap();
    assert_eq!((d.released, d.abandoned, d.busy), (1, 1, 1), "{d:?}");
    assert_eq!(
        std::fs::read(&changed).unwrap(),
        data,
        "changed file touched"
    );
    assert!(v.intact("open.dat"));
    assert!(!v.exists("idle.dat"));
    let state = |p: &'static str| {
        let c = catalog.clone();
        async move { record(&c, "vol-1", p).await.unwrap().state }
    };
    assert_eq!(state("changed.dat").await, FileState::Abandoned);
    assert_eq!(state("open.dat").await, FileState::Archived);

    // Closed: the next drain releases it.
    drop(writer);
    let d = mover.drain(SystemTime::now()).await.unwrap();
    assert_eq!((d.released, d.busy), (1, 0), "{d:?}");
    assert!(!v.exists("open.dat"));

    // The changed file moves in its new version on the next run.
    let r = mover.run_policy("p", &v.volume).await.unwrap();
    assert_eq!((r.intents, r.drain.released), (1, 1), "{r:?}");
    let rec = record(&catalog, "vol-1", "changed.dat").await.unwrap();
    assert_eq!(rec.sha256.0, sha(&data));
    assert!(lake.object(&rec.lake_key).await.unwrap() == data);
}

/// A file touched, or swapped for a symlink, after its intent was recorded
/// is not sent: the upload checks the open file's fstat against the recorded
/// version and abandons the move (the file stays, nothing reaches the lake).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_sends_only_the_recorded_version() {
    let mut v = TestVolume::new("vol-1");
    for name in ["same.dat", "touched.dat", "linked.dat"] {
        v.add(name, 16 * 1024, 20 * DAY);
    }
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    // First the lake is gone (its server stopped: connections refused), so
    // the run records the intents and nothing goes up. (A frozen server
    // would still take the requests queued on its socket once it thaws.)
    let mut gone = TestLake::s3();
    drop(gone.moto.take());
    mover.add_policy(policy("cold", &gone.url, "move", ""), gone.lake.clone());
    let r = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!(r.intents, 3, "{r:?}");
    assert_eq!(r.drain.uploaded, 0, "{r:?}");

    // The same bytes, another mtime (still old enough to be cold).
    movers::set_mtime(&v.path("touched.dat"), SystemTime::now() - 15 * DAY);
    // The same bytes, behind a symlink.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("linked.dat");
    std::fs::rename(v.path("linked.dat"), &target).unwrap();
    std::os::unix::fs::symlink(&target, v.path("linked.dat")).unwrap();

    // Then a lake that answers.
    let lake = TestLake::local();
    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let d = mover.drain(SystemTime::now() + DAY).await.unwrap();
    assert_eq!((d.released, d.abandoned, d.failed), (1, 2, 0), "{d:?}");
    assert!(!v.exists("same.dat"));
    assert!(v.intact("touched.dat"));
    let link = std::fs::symlink_metadata(v.path("linked.dat")).unwrap();
    assert!(link.file_type().is_symlink());
    assert!(v.intact("linked.dat"), "the symlink's target was touched");
    for (rel, want) in [
        ("same.dat", FileState::Released),
        ("touched.dat", FileState::Abandoned),
        ("linked.dat", FileState::Abandoned),
    ] {
        let rec = record(&catalog, "vol-1", rel).await.unwrap();
        assert_eq!(rec.state, want, "{rel}");
        let sent = lake.object(&rec.lake_key).await.is_some();
        assert_eq!(sent, want == FileState::Released, "{rel}: in the lake");
    }
}

/// The lake freezes while a directory's fresh uploads wait for the listing
/// that would confirm them: the listing fails, each file's own verification
/// fails, nothing is released; once the lake is back, a drain verifies each
/// file by reading it back (its upload was in the earlier run) and releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_lake_frozen_before_the_listing_releases_nothing() {
    let lake = TestLake::s3();
    let moto = lake.moto.as_ref().unwrap();
    let mut v = TestVolume::new("vol-1");
    for i in 0..20 {
        v.add(&format!("d/{i:02}.dat"), 16 * 1024, 10 * DAY);
    }
    let catalog = RecordingCatalog::default();
    let options = options()
        .concurrency(20)
        .confirm_window(Duration::from_secs(2));
    let mover = Mover::new(catalog.clone(), options);
    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let watch = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let uploaded = catalog
                .state(|s| s.counts_by_state()[FileState::Uploaded as usize].1)
                .await;
            if uploaded == 20 {
                moto.freeze();
                return;
            }
            assert!(Instant::now() < deadline, "the uploads did not finish");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let (report, ()) = tokio::join!(mover.run_policy("cold", &v.volume), watch);
    let report = report.unwrap();
    assert_eq!(
        (
            report.drain.uploaded,
            report.drain.archived,
            report.drain.released
        ),
        (20, 0, 0),
        "{report:?}"
    );
    assert!(
        report.drain.lake_down && report.drain.failed > 0,
        "{report:?}"
    );
    for r in records(&catalog).await {
        assert_eq!(r.state, FileState::Uploaded, "{r:?}");
        assert!(v.intact(&r.key.path), "{r:?}");
    }

    moto.thaw();
    let d = mover.drain(SystemTime::now() + DAY).await.unwrap();
    assert_eq!((d.archived, d.released, d.failed), (20, 20, 0), "{d:?}");
    let text = metrics_text(mover.metrics());
    let want = r#"strata_tiering_verified_by_total{by="read_back"} 20"#;
    assert!(text.contains(want), "missing {want}:\n{text}");
    assert!(!text.contains(r#"by="listing""#), "{text}");
}

/// The lake freezes mid-run (SIGSTOP to moto_server's PID): nothing is
/// removed that is not verified, failures are recorded with a back-off, the
/// backlog shows in the catalog and the metrics; the lake comes back (SIGCONT)
/// and a restarted mover drains the backlog oldest first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_lake_down_mid_run_then_drains_oldest_first() {
    let lake = TestLake::s3();
    let moto = lake.moto.as_ref().unwrap();
    let mut v = TestVolume::new("vol-1");
    for i in 0..40 {
        v.add(&format!("f/{i:02}.dat"), 16 * 1024, (10 + i) * DAY);
    }
    let all: Vec<String> = v.files.keys().cloned().collect();
    let catalog = RecordingCatalog::default();
    // A file at a time from upload to release, without batched listings
    // (40 files would all be confirmed by one, before the lake freezes).
    let one_by_one = options().concurrency(2).confirm_window(Duration::ZERO);
    let mover = Mover::new(catalog.clone(), one_by_one);
    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());

    // Freeze the lake once a few files are through.
    let watch = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let released = catalog
                .state(|s| s.counts_by_state()[FileState::Released as usize].1)
                .await;
            if released >= 3 {
                moto.freeze();
                return released;
            }
            assert!(Instant::now() < deadline, "no file was released");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    let (report, _) = tokio::join!(mover.run_policy("cold", &v.volume), watch);
    let report = report.unwrap();
    assert!(report.drain.lake_down, "{report:?}");
    assert!(report.drain.failed >= 1, "{report:?}");
    assert!(report.drain.released < 40, "{report:?}");
    assert_eq!(mover.lake_up("cold"), Some(false));

    let check_nothing_lost = |recs: &[FileRecord]| {
        for rel in &all {
            let rec = recs.iter().find(|r| &r.key.path == rel);
            let released = rec.is_some_and(|r| r.state == FileState::Released);
            assert!(
                v.intact(rel) || (released && !v.exists(rel)),
                "{rel}: neither local nor released ({rec:?})"
            );
        }
    };
    let recs = records(&catalog).await;
    check_nothing_lost(&recs);
    let failed: Vec<_> = recs.iter().filter(|r| r.attempts > 0).collect();
    assert!(!failed.is_empty());
    for r in &failed {
        assert!(r.state.is_backlog(), "{r:?}");
        let next = r.next_attempt_at.expect("next_attempt_at");
        assert!(next > r.updated_at, "{r:?}");
        assert!(r.last_error.is_some(), "{r:?}");
    }
    let summary = mover.refresh_metrics().await.unwrap();
    assert!(summary.files > 0 && summary.bytes > 0, "{summary:?}");
    let text = metrics_text(mover.metrics());
    for want in [
        format!("strata_tiering_backlog_files {}", summary.files),
        r#"strata_tiering_lake_up{policy="cold"} 0"#.to_owned(),
        r#"strata_tiering_upload_failures_total{policy="cold",reason="unreachable"}"#.to_owned(),
    ] {
        assert!(text.contains(&want), "missing {want}:\n{text}");
    }

    // Still down: a drain probes, attempts nothing, removes nothing.
    let d = mover.drain(SystemTime::now() + DAY).await.unwrap();
    assert!(
        d.deferred > 0 && d.uploaded == 0 && d.released == 0,
        "{d:?}"
    );
    check_nothing_lost(&records(&catalog).await);

    // Back, and a restarted mover (one file at a time, to see the order).
    moto.thaw();
    let order: Vec<FileKey> = catalog
        .state(|s| s.backlog_files().map(|r| r.key.clone()).collect())
        .await;
    let seen = catalog.commands().len();
    let restarted = Mover::new(catalog.clone(), options().concurrency(1));
    restarted.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let d = restarted.drain(SystemTime::now() + DAY).await.unwrap();
    assert_eq!(d.failed, 0, "{d:?}");
    let summary = restarted.refresh_metrics().await.unwrap();
    assert_eq!(summary.files, 0, "{summary:?}");
    let mut first_steps = Vec::new();
    for cmd in &catalog.commands()[seen..] {
        if let Command::MarkUploaded { key, .. } | Command::MarkArchived { key, .. } = cmd
            && !first_steps.contains(key)
        {
            first_steps.push(key.clone());
        }
    }
    assert_eq!(first_steps, order, "not drained oldest first");
    let cold: Vec<&str> = all.iter().map(String::as_str).collect();
    assert_moved(&catalog, &lake, &v, &cold).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_recall_restores_files_and_they_stay() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    v.add("img/a.jpg", 100 * 1024, 30 * DAY);
    v.add("img/sub/b.jpg", 9 * MIB, 40 * DAY);
    v.add("log/c.txt", 1024, 50 * DAY);
    // Owners and permission bits come back too (another owner only where
    // this process may give files away: as root, which CI is).
    let root = unsafe { libc::geteuid() } == 0;
    let owners = [
        ("img/a.jpg", 0o640, if root { (4321, 8765) } else { own() }),
        ("img/sub/b.jpg", 0o2750, own()),
    ];
    for (rel, mode, (uid, gid)) in owners {
        std::os::unix::fs::chown(v.path(rel), Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(v.path(rel), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let r = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!(r.drain.released, 3, "{r:?}");
    // The emptied directory goes too; recall must recreate it.
    std::fs::remove_dir_all(v.path("img/sub")).unwrap();

    let mut calls: Vec<RecallProgress> = Vec::new();
    let report = mover
        .recall("vol-1", "img/**", |p| calls.push(p))
        .await
        .unwrap();
    assert_eq!((report.matched, report.recalled), (2, 2), "{report:?}");
    let total = (100 * 1024 + 9 * MIB) as u64;
    assert_eq!(report.bytes, total);
    let (first, last) = (calls[0], *calls.last().unwrap());
    assert_eq!(
        (first.files_done, first.files_total, first.bytes_total),
        (0, 2, total)
    );
    assert_eq!((last.files_done, last.bytes_done), (2, total));
    for (rel, mode, (uid, gid)) in owners {
        let m = std::fs::metadata(v.path(rel)).unwrap();
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (mode, uid, gid),
            "{rel}: owner or mode not restored"
        );
    }
    for rel in ["img/a.jpg", "img/sub/b.jpg"] {
        assert!(v.intact(rel), "{rel}: not byte-identical");
        let mtime = std::fs::metadata(v.path(rel)).unwrap().modified().unwrap();
        assert_eq!(mtime, v.files[rel].1, "{rel}: mtime not restored");
        let rec = record(&catalog, "vol-1", rel).await.unwrap();
        assert_eq!(rec.state, FileState::Recalled, "{rel}");
        assert!(rec.recalled_at.is_some());
    }
    assert!(!v.exists("log/c.txt"));
    let leftovers: Vec<_> = std::fs::read_dir(v.path("img"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // Never over an existing file.
    std::fs::write(v.path("log/c.txt"), b"someone else's").unwrap();
    let r = mover.recall("vol-1", "log/*", |_| {}).await.unwrap();
    assert_eq!((r.recalled, r.conflicts), (0, 1), "{r:?}");
    assert_eq!(
        std::fs::read(v.path("log/c.txt")).unwrap(),
        b"someone else's"
    );
    std::fs::remove_file(v.path("log/c.txt")).unwrap();
    let r = mover.recall("vol-1", "log/*", |_| {}).await.unwrap();
    assert_eq!(r.recalled, 1, "{r:?}");
    assert!(v.intact("log/c.txt"));

    // Recalled files are not cold again (their age counts from the recall).
    let again = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!(
        (again.recalled_not_cold, again.intents),
        (3, 0),
        "{again:?}"
    );
    for rel in ["img/a.jpg", "img/sub/b.jpg", "log/c.txt"] {
        assert!(v.intact(rel), "{rel}");
    }
    let bad = mover.recall("vol-1", "img/[", |_| {}).await.unwrap_err();
    assert!(bad.to_string().contains("glob"), "{bad}");
}

/// The newest modification time of the files under `dir` (a local lake's
/// objects: the moment the last byte of the last upload landed).
fn newest_mtime(dir: &Path) -> SystemTime {
    let mut newest = UNIX_EPOCH;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let t = if e.file_type().unwrap().is_dir() {
            newest_mtime(&e.path())
        } else {
            e.metadata().unwrap().modified().unwrap()
        };
        newest = newest.max(t);
    }
    newest
}

/// 24 MiB at a timetable limit of 8 MiB/s (the default, 1 MiB/s, would be
/// far slower): the rate from the start of the run to the last byte landing
/// in the lake is within 10 % of the limit. (The verification read-back that
/// follows is not an upload.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_bandwidth_limit_is_honoured() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    v.add("big-1.bin", 8 * MIB, 30 * DAY);
    v.add("big-2.bin", 8 * MIB, 30 * DAY);
    for i in 0..8 {
        v.add(&format!("small-{i}.bin"), MIB, 30 * DAY);
    }
    let limit = 8.0 * MIB as f64;
    let bandwidth = "bandwidth:\n  limit: 1MiB/s\n  timetable:\n    - {limit: 8MiB/s}\n";
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(
        policy("paced", &lake.url, "copy", bandwidth),
        lake.lake.clone(),
    );
    let started = SystemTime::now();
    let r = mover.run_policy("paced", &v.volume).await.unwrap();
    assert_eq!(r.drain.uploaded_bytes, 24 * MIB as u64, "{r:?}");
    let lake_dir = Path::new(lake.url.strip_prefix("file://").unwrap());
    let uploading = newest_mtime(lake_dir).duration_since(started).unwrap();
    let rate = r.drain.uploaded_bytes as f64 / uploading.as_secs_f64();
    let ratio = rate / limit;
    eprintln!(
        "bandwidth: {:.2} MiB/s against a limit of 8 MiB/s: 24 MiB in {:.2} s (ratio {ratio:.3}; whole run {:.2} s)",
        rate / MIB as f64,
        uploading.as_secs_f64(),
        r.elapsed.as_secs_f64()
    );
    assert!((0.9..=1.1).contains(&ratio), "ratio {ratio:.3}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_refuses_unknown_policy_and_unselected_volume() {
    let lake = TestLake::local();
    let v = TestVolume::new("vol-1");
    let mover = Mover::new(MemoryCatalog::new(), options());
    let e = mover.run_policy("nope", &v.volume).await.unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let p = policy(
        "only-line-3",
        &lake.url,
        "move",
        "selector: {volumes: [\"line-3/*\"]}\n",
    );
    mover.add_policy(p, lake.lake.clone());
    let e = mover
        .run_policy("only-line-3", &v.volume)
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("does not select volume vol-1"),
        "{e}"
    );
    let e = mover.recall("vol-9", "**", |_| {}).await.unwrap_err();
    assert!(e.to_string().contains("vol-9"), "{e}");
}

// ---------------------------------------------------------------------------
// kill -9 between any two steps, with the durable (Raft over RocksDB) catalog.
//
// The test binary runs itself again as the child (this test's own name as the
// filter, the role in STRATA_TEST_MOVER_CHILD); the child runs the mover with
// STRATA_TEST_PAUSE_AT set, the parent kills it with SIGKILL when it prints
// `strata: paused at <point>`, opens the same data directory again and checks
// that every file is still local and byte-identical, or archived, verified in
// the lake and recorded: never neither. Then a drain and a run finish the job.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use strata_tiering::catalog::Volume;
use strata_tiering::mover::{PAUSE_ENV, PausePoint};
use strata_tiering::raft::{CatalogNode, CatalogOptions};

const CHILD_ENV: &str = "STRATA_TEST_MOVER_CHILD";
const CRASH_TEST: &str = "mover_kill_9_at_every_step_loses_nothing";

fn raft_options() -> CatalogOptions {
    CatalogOptions {
        heartbeat_interval: Duration::from_millis(50),
        election_timeout: (Duration::from_millis(150), Duration::from_millis(300)),
        ..CatalogOptions::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What parent and child agree on: `<role> <data dir> <volume dir> <lake url>`.
struct Site {
    data: PathBuf,
    volume: Volume,
    lake_url: String,
}

impl Site {
    fn encode(&self, role: &str) -> String {
        format!(
            "{role}\n{}\n{}\n{}",
            self.data.display(),
            self.volume.path,
            self.lake_url
        )
    }

    fn decode(text: &str) -> (String, Site) {
        let mut parts = text.split('\n');
        let mut next = || parts.next().expect("child spec").to_owned();
        let role = next();
        let (data, path, lake_url) = (PathBuf::from(next()), next(), next());
        let volume = Volume {
            id: "vol-1".into(),
            path,
            labels: Default::default(),
        };
        (
            role,
            Site {
                data,
                volume,
                lake_url,
            },
        )
    }

    async fn mover(&self) -> (Mover<CatalogNode>, TestLake) {
        let node = CatalogNode::open(&self.data, raft_options()).await.unwrap();
        let lake = TestLake::open_local(&self.lake_url);
        let mover = Mover::new(node, options().concurrency(2));
        mover.add_policy(
            policy("cold", &self.lake_url, "move", ""),
            lake.lake.clone(),
        );
        (mover, lake)
    }
}

/// The child: runs the policy (or a recall) until the pause point freezes it.
fn crash_child(spec: &str) {
    let (role, site) = Site::decode(spec);
    runtime().block_on(async {
        let (mover, _lake) = site.mover().await;
        match role.as_str() {
            "run" => {
                mover.run_policy("cold", &site.volume).await.unwrap();
            }
            _ => {
                mover.recall("vol-1", "**", |_| {}).await.unwrap();
            }
        }
        eprintln!("strata: child finished without pausing");
    });
}

/// Runs the child until it pauses at `point`, then kill -9s it.
fn run_child_until(site: &Site, role: &str, point: PausePoint) {
    // Our own binary even if a rebuild replaced the file at its path meanwhile.
    let mut child = std::process::Command::new("/proc/self/exe")
        .args([CRASH_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, site.encode(role))
        .env(PAUSE_ENV, point.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let want = format!("strata: paused at {point}");
    let mut seen = Vec::new();
    let reader = BufReader::new(child.stderr.take().unwrap());
    let mut paused = false;
    for line in reader.lines() {
        let line = line.unwrap_or_default();
        if line.contains(&want) {
            paused = true;
            break;
        }
        seen.push(line);
    }
    // SIGKILL to the child's PID, then reap it.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        paused,
        "{point}: the child never paused:\n{}",
        seen.join("\n")
    );
}

/// Every file is local and intact, or archived/released with its object in
/// the lake holding exactly its bytes.
async fn assert_never_neither<C: CatalogClient>(
    point: PausePoint,
    catalog: &C,
    lake: &TestLake,
    v: &TestVolume,
) {
    for (rel, (data, _)) in &v.files {
        if v.intact(rel) {
            continue;
        }
        let key = FileKey::new("vol-1", rel.as_str());
        let rec = catalog.read(move |s| s.file(&key).cloned()).await.unwrap();
        let rec = rec.unwrap_or_else(|| panic!("{point}: {rel} is gone and has no record"));
        assert!(
            matches!(rec.state, FileState::Archived | FileState::Released),
            "{point}: {rel} is gone but {}",
            rec.state
        );
        let object = lake.object(&rec.lake_key).await;
        assert!(
            object.as_deref() == Some(data.as_slice()),
            "{point}: {rel} is gone and its object is not in the lake"
        );
    }
}

/// The paused file is found exactly in the window its point names.
async fn assert_window<C: CatalogClient>(
    point: PausePoint,
    catalog: &C,
    lake: &TestLake,
    v: &TestVolume,
) {
    let recs: Vec<FileRecord> = catalog
        .read(|s| {
            s.files(&FileFilter::default(), None, usize::MAX)
                .items
                .into_iter()
                .cloned()
                .collect()
        })
        .await
        .unwrap();
    let mut found = false;
    for r in &recs {
        let local = v.exists(&r.key.path);
        let object = lake.object(&r.lake_key).await.is_some();
        found |= match point {
            PausePoint::AfterIntent => r.state == FileState::Intent,
            PausePoint::AfterUpload => r.state == FileState::Intent && object,
            PausePoint::AfterMarkUploaded | PausePoint::AfterVerify => {
                r.state == FileState::Uploaded && object
            }
            PausePoint::AfterMarkArchived => r.state == FileState::Archived && local,
            PausePoint::AfterUnlink => r.state == FileState::Archived && !local,
            PausePoint::AfterMarkReleased => r.state == FileState::Released && !local,
            PausePoint::AfterRename => r.state == FileState::Released && v.intact(&r.key.path),
        };
    }
    assert!(found, "{point}: no file in that window: {recs:#?}");
}

fn cold_volume(base: &Path) -> TestVolume {
    let mut v = TestVolume::new("vol-1");
    v.volume.path = base.join("vol").display().to_string();
    std::fs::create_dir_all(&v.volume.path).unwrap();
    for i in 0..4 {
        v.add(&format!("d/{i}.dat"), 20 * 1024, 30 * DAY);
    }
    v.add("big.bin", 9 * MIB, 30 * DAY);
    v
}

#[test]
fn mover_kill_9_at_every_step_loses_nothing() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        crash_child(&spec);
        return;
    }
    for point in PausePoint::ALL {
        let base = tempfile::tempdir().unwrap();
        let v = cold_volume(base.path());
        let site = Site {
            data: base.path().join("data"),
            volume: v.volume.clone(),
            lake_url: format!("file://{}/lake", base.path().display()),
        };
        let rt = runtime();
        let role = if point == PausePoint::AfterRename {
            // Move everything first, then crash a recall.
            rt.block_on(async {
                let (mover, _lake) = site.mover().await;
                let r = mover.run_policy("cold", &site.volume).await.unwrap();
                assert_eq!(r.drain.released, 5, "{r:?}");
                mover.catalog().shutdown().await.unwrap();
            });
            "recall"
        } else {
            "run"
        };
        run_child_until(&site, role, point);
        rt.block_on(async {
            let (mover, lake) = site.mover().await;
            let catalog = mover.catalog();
            assert_window(point, catalog, &lake, &v).await;
            assert_never_neither(point, catalog, &lake, &v).await;
            mover.drain(SystemTime::now() + DAY).await.unwrap();
            assert_never_neither(point, catalog, &lake, &v).await;
            if role == "recall" {
                let r = mover.recall("vol-1", "**", |_| {}).await.unwrap();
                assert_eq!(r.failed, 0, "{point}: {r:?}");
                for rel in v.files.keys() {
                    assert!(v.intact(rel), "{point}: {rel} not recalled");
                }
            } else {
                let r = mover.run_policy("cold", &site.volume).await.unwrap();
                assert_eq!(r.drain.failed, 0, "{point}: {r:?}");
                for rel in v.files.keys() {
                    assert!(!v.exists(rel), "{point}: {rel} not released");
                    let key = FileKey::new("vol-1", rel.as_str());
                    let rec = catalog.read(move |s| s.file(&key).cloned()).await.unwrap();
                    assert_eq!(
                        rec.map(|r| r.state),
                        Some(FileState::Released),
                        "{point}: {rel}"
                    );
                }
                assert_never_neither(point, catalog, &lake, &v).await;
            }
            let backlog = mover.refresh_metrics().await.unwrap();
            assert_eq!(backlog.files, 0, "{point}: {backlog:?}");
            catalog.shutdown().await.unwrap();
        });
        eprintln!("{point}: resumed, nothing lost");
    }
}

/// This process's user and group.
fn own() -> (u32, u32) {
    // SAFETY: geteuid and getegid cannot fail.
    unsafe { (libc::geteuid(), libc::getegid()) }
}

/// Everything under `dir`, the directory itself included, as `lstat` sees
/// it: type, mode, owner, mtime and (for files) the bytes.
fn tree(dir: &Path) -> std::collections::BTreeMap<PathBuf, (u32, u32, u32, i64, Vec<u8>)> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let m = std::fs::symlink_metadata(&p).unwrap();
        let bytes = if m.is_file() {
            std::fs::read(&p).unwrap()
        } else {
            Vec::new()
        };
        if m.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        }
        let mtime = m.mtime() * 1_000_000_000 + m.mtime_nsec();
        out.insert(p, (m.mode(), m.uid(), m.gid(), mtime, bytes));
    }
    out
}

/// A directory outside the volume with a file and a subdirectory that a
/// write through a symlink could reach.
fn outside_dir() -> (tempfile::TempDir, PathBuf) {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("outside");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep.txt"), b"outside the volume").unwrap();
    std::fs::set_permissions(dir.join("keep.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(dir.join("sub")).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    (base, dir)
}

/// A pod swaps a directory of its volume for a symlink to a directory
/// outside it before a recall: the recall of the files beneath it fails,
/// saying why, and nothing outside the volume is written, chowned or
/// chmodded. The other files come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_recall_never_writes_through_a_symlinked_directory() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    v.add("d/f.dat", 64 * 1024, 30 * DAY);
    v.add("d/sub/g.dat", 1024, 30 * DAY);
    v.add("top.dat", 1024, 30 * DAY);
    // Recorded with another owner and the setuid bit: a write outside would
    // carry them.
    if own().0 == 0 {
        std::os::unix::fs::chown(v.path("d/f.dat"), Some(4321), Some(8765)).unwrap();
    }
    std::fs::set_permissions(v.path("d/f.dat"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let r = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!(r.drain.released, 3, "{r:?}");

    let (_base, outside) = outside_dir();
    let before = tree(&outside);
    std::fs::remove_dir_all(v.path("d")).unwrap();
    std::os::unix::fs::symlink(&outside, v.path("d")).unwrap();

    let r = mover.recall("vol-1", "**", |_| {}).await.unwrap();
    assert_eq!((r.matched, r.recalled, r.failed), (3, 1, 2), "{r:?}");
    assert!(v.intact("top.dat"));
    for rel in ["d/f.dat", "d/sub/g.dat"] {
        let why = r
            .errors
            .iter()
            .find(|e| e.starts_with(rel))
            .unwrap_or_else(|| panic!("{rel}: no error in {:?}", r.errors));
        assert!(why.contains("symlink"), "{why}");
        assert!(why.contains("never follows symlinks"), "{why}");
        let rec = record(&catalog, "vol-1", rel).await.unwrap();
        assert_eq!(rec.state, FileState::Released, "{rel}");
    }
    assert_eq!(tree(&outside), before, "the symlink's target was touched");
    assert!(
        std::fs::symlink_metadata(v.path("d"))
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // The directory back as a directory: the recall goes through.
    std::fs::remove_file(v.path("d")).unwrap();
    let r = mover.recall("vol-1", "d/**", |_| {}).await.unwrap();
    assert_eq!((r.recalled, r.failed), (2, 0), "{r:?}");
    assert!(v.intact("d/f.dat") && v.intact("d/sub/g.dat"));
    let m = std::fs::metadata(v.path("d/f.dat")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o4755);
    assert_eq!(tree(&outside), before);
}

/// An archived file whose directory was swapped for a symlink to where the
/// file now is (outside the volume), and one whose own path is now a
/// symlink to it: neither is released through the symlink.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_release_never_deletes_through_a_symlink() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    v.add("d/f.dat", 32 * 1024, 30 * DAY);
    v.add("g.dat", 32 * 1024, 30 * DAY);
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("p", &lake.url, "copy", ""), lake.lake.clone());
    let r = mover.run_policy("p", &v.volume).await.unwrap();
    assert_eq!(r.drain.archived, 2, "{r:?}");

    // The very inodes that were hashed, now outside the volume.
    let (_base, outside) = outside_dir();
    std::fs::rename(v.path("d"), outside.join("d")).unwrap();
    std::os::unix::fs::symlink(outside.join("d"), v.path("d")).unwrap();
    std::fs::rename(v.path("g.dat"), outside.join("g.dat")).unwrap();
    std::os::unix::fs::symlink(outside.join("g.dat"), v.path("g.dat")).unwrap();
    let before = tree(&outside);

    mover.add_policy(policy("p", &lake.url, "move", ""), lake.lake.clone());
    let d = mover.drain(SystemTime::now()).await.unwrap();
    assert_eq!(d.released, 0, "{d:?}");
    assert_eq!(tree(&outside), before, "deleted through a symlink");
    assert_eq!(
        std::fs::read(outside.join("d/f.dat")).unwrap(),
        v.files["d/f.dat"].0
    );
    for rel in ["d/f.dat", "g.dat"] {
        let rec = record(&catalog, "vol-1", rel).await.unwrap();
        assert_ne!(rec.state, FileState::Released, "{rel}");
    }
}

/// `rsync --inplace -t` or `touch -r`: new bytes of the same length, the
/// mtime put back. Size, mtime and inode say nothing changed; the ctime
/// does, and the file stays (its move abandoned); the next run moves the
/// new content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_same_size_rewrite_with_restored_mtime_is_not_released() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    v.add("a.dat", 32 * 1024, 30 * DAY);
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("p", &lake.url, "copy", ""), lake.lake.clone());
    let r = mover.run_policy("p", &v.volume).await.unwrap();
    assert_eq!(r.drain.archived, 1, "{r:?}");
    let rec = record(&catalog, "vol-1", "a.dat").await.unwrap();
    assert_ne!(rec.ctime_ns, 0, "the ctime is recorded");

    // Past the kernel's timestamp granularity, so the ctime moves.
    std::thread::sleep(Duration::from_millis(20));
    let (old, mtime) = v.files["a.dat"].clone();
    let new: Vec<u8> = old.iter().map(|b| b ^ 0xff).collect();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(v.path("a.dat"))
            .unwrap();
        f.write_all(&new).unwrap();
    }
    movers::set_mtime(&v.path("a.dat"), mtime);
    let m = std::fs::metadata(v.path("a.dat")).unwrap();
    assert_eq!(
        (
            m.size(),
            m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            m.ino()
        ),
        (rec.size, rec.mtime_ns, rec.ino),
        "the rewrite is invisible to size, mtime and inode"
    );

    mover.add_policy(policy("p", &lake.url, "move", ""), lake.lake.clone());
    let d = mover.drain(SystemTime::now()).await.unwrap();
    assert_eq!((d.released, d.abandoned), (0, 1), "{d:?}");
    assert_eq!(std::fs::read(v.path("a.dat")).unwrap(), new);
    let after = record(&catalog, "vol-1", "a.dat").await.unwrap();
    assert_eq!(after.state, FileState::Abandoned);
    assert!(
        !catalog
            .commands()
            .iter()
            .any(|c| matches!(c, Command::MarkReleased { .. })),
        "a release was recorded"
    );

    let r = mover.run_policy("p", &v.volume).await.unwrap();
    assert_eq!((r.intents, r.drain.released), (1, 1), "{r:?}");
    let rec = record(&catalog, "vol-1", "a.dat").await.unwrap();
    assert!(lake.object(&rec.lake_key).await.unwrap() == new);
}

/// A file under the private name a release sets its file aside to, which
/// strata did not put there: it is kept, byte for byte, and the release
/// waits (counted as failed, logged with the path) instead of deleting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_keeps_a_foreign_file_under_the_aside_name() {
    let lake = TestLake::local();
    let mut v = TestVolume::new("vol-1");
    v.add("a.dat", 32 * 1024, 30 * DAY);
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("p", &lake.url, "copy", ""), lake.lake.clone());
    let r = mover.run_policy("p", &v.volume).await.unwrap();
    assert_eq!(r.drain.archived, 1, "{r:?}");
    let rec = record(&catalog, "vol-1", "a.dat").await.unwrap();
    let aside = v.path(&format!(".a.dat.strata-release.{:016x}", rec.move_id));
    std::fs::write(&aside, b"someone else's").unwrap();

    mover.add_policy(policy("p", &lake.url, "move", ""), lake.lake.clone());
    let d = mover.drain(SystemTime::now()).await.unwrap();
    assert_eq!((d.released, d.failed), (0, 1), "{d:?}");
    assert_eq!(std::fs::read(&aside).unwrap(), b"someone else's");
    assert!(v.intact("a.dat"));
    let state = record(&catalog, "vol-1", "a.dat").await.unwrap().state;
    assert_eq!(state, FileState::Archived);

    // With the path empty, the foreign file is still not taken for the
    // file set aside by an interrupted release.
    std::fs::remove_file(v.path("a.dat")).unwrap();
    let d = mover.drain(SystemTime::now()).await.unwrap();
    assert_eq!((d.released, d.failed), (0, 1), "{d:?}");
    assert_eq!(std::fs::read(&aside).unwrap(), b"someone else's");
}
