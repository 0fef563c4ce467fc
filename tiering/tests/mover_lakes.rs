//! A record is bound to the lake its copy was verified in: a policy whose
//! lake changed releases nothing until the new lake holds a verified copy;
//! an archive removed from the lake behind strata's back is not released on
//! its old verification; recall reads from the recorded lake; records from
//! before strata kept the lake are verified again; no credential reaches a
//! record. Real parts: local-directory lakes and moto_server.

#[path = "common/data.rs"]
mod data;
#[path = "common/moto.rs"]
mod moto;
#[allow(dead_code)]
#[path = "common/movers.rs"]
mod movers;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use movers::{DAY, RecordingCatalog, TestLake, TestVolume, policy};
use prometheus_client::registry::Registry;
use strata_tiering::catalog::{
    Applied, CatalogClient, CatalogError, Command, FileKey, FileRecord, FileState, LogEntry,
    Rejected, State, Timestamp,
};
use strata_tiering::lake::{Lake, LakeConfig};
use strata_tiering::metrics::TieringMetrics;
use strata_tiering::mover::{Backoff, Mover, MoverOptions};
use strata_tiering::scan::ScanOptions;

fn options() -> MoverOptions {
    MoverOptions::default()
        .scan(ScanOptions::default().settle(Duration::ZERO).workers(2))
        .backoff(Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_secs(2),
        })
}

/// Past any back-off the tests' options choose.
fn later() -> SystemTime {
    SystemTime::now() + Duration::from_secs(60)
}

fn metrics_text(m: &TieringMetrics) -> String {
    let mut registry = Registry::with_prefix("strata");
    m.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

async fn record<C: CatalogClient>(c: &C, path: &str) -> FileRecord {
    record_in(c, "vol-1", path).await
}

async fn record_in<C: CatalogClient>(c: &C, volume: &str, path: &str) -> FileRecord {
    let key = FileKey::new(volume, path);
    c.read(move |s: &State| s.file(&key).cloned())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{volume}:{path}: no record"))
}

/// A catalog in front of a [`RecordingCatalog`] that changes the
/// `MarkArchived` commands an agent proposes: as an agent from before
/// strata kept the lake (`lake` and `verified_at` dropped), or one whose
/// verifications are `backdate` old.
#[derive(Clone)]
struct Rewriting {
    inner: RecordingCatalog,
    old_agent: bool,
    backdate: Duration,
}

impl CatalogClient for Rewriting {
    async fn propose(
        &self,
        mut entry: LogEntry,
    ) -> Result<Result<Applied, Rejected>, CatalogError> {
        if let Command::MarkArchived {
            lake, verified_at, ..
        } = &mut entry.command
        {
            if self.old_agent {
                (*lake, *verified_at) = (None, None);
            } else if let Some(at) = verified_at {
                let ns = at.unix_nanos() - self.backdate.as_nanos() as u64;
                *at = Timestamp::from_unix_nanos(ns);
            }
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

fn root_of(lake: &TestLake) -> PathBuf {
    PathBuf::from(lake.url.strip_prefix("file://").unwrap())
}

/// A policy's lake changes from A to B: nothing archived in A is released
/// while B cannot take a copy; once B holds a verified one the file is
/// released, its record names B, and a recall reads it from B (A's object
/// is gone by then).
async fn lake_change(a: &TestLake, b: &TestLake, break_b: impl Fn(), mend_b: impl Fn()) {
    let mut v = TestVolume::new("vol-1");
    v.add("x.bin", 64 * 1024, 30 * DAY);
    v.add("d/y.bin", 3000, 30 * DAY);
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("cold", &a.url, "copy", ""), a.lake.clone());
    let r = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!((r.drain.archived, r.drain.released), (2, 0), "{r:?}");
    let rec = record(&catalog, "x.bin").await;
    assert_eq!(rec.lake.as_deref(), Some(a.lake.location()));

    // The same policy, now `move`, to lake B, which cannot take a copy yet.
    break_b();
    mover.add_policy(policy("cold", &b.url, "move", ""), b.lake.clone());
    for _ in 0..2 {
        let r = mover.drain(later()).await.unwrap();
        assert_eq!(r.released, 0, "released on A's copy: {r:?}");
        assert!(r.failed >= 2, "{r:?}");
    }
    for rel in ["x.bin", "d/y.bin"] {
        assert!(v.intact(rel), "{rel}: released on the strength of lake A");
        let rec = record(&catalog, rel).await;
        assert_eq!(rec.state, FileState::Archived, "{rel}");
        assert_eq!(rec.lake.as_deref(), Some(a.lake.location()), "{rel}");
    }

    mend_b();
    let r = mover.drain(later()).await.unwrap();
    assert_eq!((r.archived, r.released), (2, 2), "{r:?}");
    for (rel, (data, _)) in &v.files {
        assert!(!v.exists(rel), "{rel}");
        let rec = record(&catalog, rel).await;
        assert_eq!(rec.state, FileState::Released, "{rel}");
        assert_eq!(rec.lake.as_deref(), Some(b.lake.location()), "{rel}");
        assert!(b.object(&rec.lake_key).await.unwrap() == *data, "{rel}");
        // Only B's copy is left to read from.
        a.lake.delete(&rec.lake_key).await.unwrap();
    }
    let r = mover.recall("vol-1", "**", |_| {}).await.unwrap();
    assert_eq!((r.recalled, r.failed), (2, 0), "{r:?}");
    for rel in ["x.bin", "d/y.bin"] {
        assert!(v.intact(rel), "{rel}: not recalled byte for byte");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_lake_change_releases_nothing_until_the_new_lake_holds_a_copy_local() {
    let (a, b) = (TestLake::local(), TestLake::local());
    let root = root_of(&b);
    let (r1, r2) = (root.clone(), root);
    let break_b = move || {
        std::fs::remove_dir_all(&r1).unwrap();
        std::fs::write(&r1, b"not a directory").unwrap();
    };
    let mend_b = move || {
        std::fs::remove_file(&r2).unwrap();
        std::fs::create_dir(&r2).unwrap();
    };
    lake_change(&a, &b, break_b, mend_b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_lake_change_releases_nothing_until_the_new_lake_holds_a_copy_s3() {
    let a = TestLake::s3();
    let moto = a.moto.as_ref().unwrap();
    let b = TestLake::s3_on(&moto.endpoint(), "s3://lake-b/moved", &[]);
    // B's bucket does not exist until mended.
    lake_change(&a, &b, || {}, || moto.create_bucket("lake-b")).await;
}

/// A recall of a file whose recorded lake no loaded policy names fails,
/// naming the lake; the policy's own (other) lake is not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_recall_reads_only_the_recorded_lake() {
    let (a, b) = (TestLake::local(), TestLake::local());
    let mut v = TestVolume::new("vol-1");
    v.add("x.bin", 4096, 30 * DAY);
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("cold", &a.url, "move", ""), a.lake.clone());
    let r = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!(r.drain.released, 1, "{r:?}");
    // The policy now names B, which holds no copy: nothing to release, and
    // a recall must not look in B.
    mover.add_policy(policy("cold", &b.url, "move", ""), b.lake.clone());
    let r = mover.recall("vol-1", "**", |_| {}).await.unwrap();
    assert_eq!((r.recalled, r.failed), (0, 1), "{r:?}");
    let why = &r.errors[0];
    assert!(why.contains(a.lake.location()), "{why}");
    assert!(!v.exists("x.bin"));
    // Another policy that names A lends its configuration.
    mover.add_policy(policy("archive-a", &a.url, "copy", ""), a.lake.clone());
    let r = mover.recall("vol-1", "**", |_| {}).await.unwrap();
    assert_eq!((r.recalled, r.failed), (1, 0), "{r:?}");
    assert!(v.intact("x.bin"));
}

/// An object removed from the lake after it was verified (a lifecycle
/// rule, a hand): an archive verified longer ago than `reverify_after`
/// is looked at again, and is not released on its old verification; it is
/// uploaded again, and released on the fresh one in a later drain. One
/// whose object is still there is released after the look.
async fn lost_object(reverify_after: Duration, backdate: Duration) {
    let lake = TestLake::s3();
    let mut v = TestVolume::new("vol-1");
    v.add("lost.bin", 64 * 1024, 30 * DAY);
    v.add("kept.bin", 2048, 30 * DAY);
    let catalog = Rewriting {
        inner: RecordingCatalog::default(),
        old_agent: false,
        backdate,
    };
    let mover = Mover::new(catalog.clone(), options().reverify_after(reverify_after));
    mover.add_policy(policy("cold", &lake.url, "copy", ""), lake.lake.clone());
    let r = mover.run_policy("cold", &v.volume).await.unwrap();
    assert_eq!((r.drain.archived, r.drain.released), (2, 0), "{r:?}");
    let lost = record(&catalog, "lost.bin").await;
    lake.lake.delete(&lost.lake_key).await.unwrap();

    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let r = mover.drain(later()).await.unwrap();
    assert_eq!((r.released, r.uploaded, r.archived), (1, 1, 1), "{r:?}");
    assert!(!v.exists("kept.bin"));
    assert!(v.intact("lost.bin"), "released on an old verification");
    let again = record(&catalog, "lost.bin").await;
    assert_eq!(again.state, FileState::Archived);
    assert!(again.verified_at > lost.verified_at, "{again:?}");
    assert!(lake.object(&lost.lake_key).await.unwrap() == v.files["lost.bin"].0);
    let text = metrics_text(mover.metrics());
    assert!(
        text.contains(r#"strata_tiering_upload_failures_total{policy="cold",reason="lost"} 1"#),
        "{text}"
    );
    // The fresh verification (looked at again, and found) lets it go.
    let r = mover.drain(later()).await.unwrap();
    assert_eq!(r.released, 1, "{r:?}");
    assert!(!v.exists("lost.bin"));
    assert_eq!(
        record(&catalog, "lost.bin").await.state,
        FileState::Released
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_lost_object_is_not_released_on_an_old_verification() {
    // The default age, and verifications made two hours ago.
    lost_object(
        MoverOptions::default().reverify_after,
        2 * 3600 * Duration::from_secs(1),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_lost_object_is_not_released_with_reverify_after_zero() {
    lost_object(Duration::ZERO, Duration::ZERO).await;
}

/// Records archived by an agent from before strata kept the lake name
/// none: a release verifies them again in the policy's lake first (an
/// object gone meanwhile is uploaded again) and binds them to it; a recall
/// reads them from their policy's lake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_records_without_a_lake_are_verified_again_before_release() {
    let lake = TestLake::local();
    let mut v1 = TestVolume::new("vol-1");
    v1.add("present.bin", 4096, 30 * DAY);
    v1.add("gone.bin", 8192, 30 * DAY);
    let mut v2 = TestVolume::new("vol-2");
    v2.add("moved.bin", 1000, 30 * DAY);
    let old = Rewriting {
        inner: RecordingCatalog::default(),
        old_agent: true,
        backdate: Duration::ZERO,
    };
    let old_mover = Mover::new(old.clone(), options());
    old_mover.add_policy(policy("cold", &lake.url, "copy", ""), lake.lake.clone());
    let r = old_mover.run_policy("cold", &v1.volume).await.unwrap();
    assert_eq!(r.drain.archived, 2, "{r:?}");
    old_mover.add_policy(policy("cold-2", &lake.url, "move", ""), lake.lake.clone());
    let r = old_mover.run_policy("cold-2", &v2.volume).await.unwrap();
    assert_eq!(r.drain.released, 1, "{r:?}");
    let moved = record_in(&old, "vol-2", "moved.bin").await;
    assert_eq!(
        (moved.state, moved.lake.as_deref()),
        (FileState::Released, None)
    );
    let gone = record(&old, "gone.bin").await;
    assert_eq!(
        (gone.state, gone.lake.as_deref()),
        (FileState::Archived, None)
    );
    lake.lake.delete(&gone.lake_key).await.unwrap();

    // A current agent: verified again (uploaded again where gone), bound, released.
    let catalog = old.inner.clone();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("cold", &lake.url, "move", ""), lake.lake.clone());
    let r = mover.drain(later()).await.unwrap();
    assert_eq!((r.archived, r.uploaded, r.released), (2, 1, 2), "{r:?}");
    for (rel, (data, _)) in &v1.files {
        let rec = record(&catalog, rel).await;
        assert_eq!(rec.state, FileState::Released, "{rel}");
        assert_eq!(rec.lake.as_deref(), Some(lake.lake.location()), "{rel}");
        assert!(lake.object(&rec.lake_key).await.unwrap() == *data, "{rel}");
    }
    mover.add_policy(policy("cold-2", &lake.url, "copy", ""), lake.lake.clone());
    let r = mover.recall("vol-2", "**", |_| {}).await.unwrap();
    assert_eq!(r.recalled, 1, "{r:?}");
    assert!(v2.intact("moved.bin"));
}

/// The lake a record names is built from the parsed lake, never from the
/// text it was given: no credential (a credentials file's keys), query or
/// fragment reaches a record, its serialised form, or the metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mover_records_name_their_lake_without_credentials() {
    let moto = TestLake::s3();
    let creds = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        creds.path(),
        "[default]\naws_access_key_id = AKIAHUNTER2KEY\naws_secret_access_key = hunter2secret\n",
    )
    .unwrap();
    let option = format!("file:{}", creds.path().display());
    let endpoint = moto.moto.as_ref().unwrap().endpoint();
    let s3 = TestLake::s3_on(&endpoint, "s3://lake/site-a/", &[("credentials", &option)]);
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "file://{}/lake?token=hunter2secret#hunter2",
        dir.path().display()
    );
    let config = LakeConfig::parse(&url, Vec::<(String, String)>::new()).unwrap();
    let local = Lake::open(&config).unwrap();

    let mut v1 = TestVolume::new("vol-1");
    v1.add("a.bin", 2048, 30 * DAY);
    let mut v2 = TestVolume::new("vol-2");
    v2.add("b.bin", 2048, 30 * DAY);
    let catalog = RecordingCatalog::default();
    let mover = Mover::new(catalog.clone(), options());
    mover.add_policy(policy("s3", &s3.url, "move", ""), s3.lake.clone());
    mover.add_policy(policy("local", &url, "move", ""), local.clone());
    assert_eq!(
        mover
            .run_policy("s3", &v1.volume)
            .await
            .unwrap()
            .drain
            .released,
        1
    );
    assert_eq!(
        mover
            .run_policy("local", &v2.volume)
            .await
            .unwrap()
            .drain
            .released,
        1
    );

    let a = record(&catalog, "a.bin").await;
    assert_eq!(a.lake.as_deref(), Some("s3://lake/site-a"));
    let b = record_in(&catalog, "vol-2", "b.bin").await;
    let want = format!("file://{}/lake", dir.path().display());
    assert_eq!(b.lake.as_deref(), Some(want.as_str()));
    let shown = format!(
        "{a:?} {b:?} {} {} {}",
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap(),
        metrics_text(mover.metrics()),
    );
    for secret in ["hunter2", "AKIAHUNTER2KEY", "token"] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    // And both recall from there.
    for (vol, v, rel) in [("vol-1", &v1, "a.bin"), ("vol-2", &v2, "b.bin")] {
        let r = mover.recall(vol, "**", |_| {}).await.unwrap();
        assert_eq!(r.recalled, 1, "{r:?}");
        assert!(v.intact(rel));
    }
}
