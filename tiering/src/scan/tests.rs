use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, SystemTime};

use rustix::fs::{CWD, FileType, Mode, OFlags, Timespec, Timestamps, UTIME_OMIT, mkdirat, openat};

use super::*;

fn write(path: &Path, len: usize) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, vec![b'x'; len]).unwrap();
}

fn set_mtime(path: &Path, mtime: SystemTime) {
    let since = mtime.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: since.as_secs() as i64,
            tv_nsec: since.subsec_nanos().into(),
        },
    };
    rustix::fs::utimensat(CWD, path, &times, rustix::fs::AtFlags::empty()).unwrap();
}

/// Regular files under `root` by `std::fs`, not following symlinks.
fn reference_walk(root: &Path) -> BTreeMap<PathBuf, fs::Metadata> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let meta = fs::symlink_metadata(entry.path()).unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                out.insert(entry.path().strip_prefix(root).unwrap().to_owned(), meta);
            }
        }
    }
    out
}

fn collect(scan: Scan) -> (BTreeMap<PathBuf, FileFacts>, ScanStats) {
    let mut scan = scan;
    let files = scan
        .by_ref()
        .map(|f| (f.rel_path.clone(), f))
        .collect::<BTreeMap<_, _>>();
    (files, scan.finish().unwrap())
}

#[test]
fn scan_reports_settled_regular_files_like_a_reference_walk() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for (i, path) in [
        "top.bin",
        "a/one.jpg",
        "a/b/two.jpg",
        "a/b/c/d/e/deep.dat",
        "wide/0",
        "wide/1",
        "wide/2",
        "empty-file",
    ]
    .iter()
    .enumerate()
    {
        write(
            &root.join(path),
            if *path == "empty-file" {
                0
            } else {
                100 * i + 1
            },
        );
    }
    fs::create_dir_all(root.join("empty/dir")).unwrap();
    for i in 0..300 {
        write(&root.join(format!("many/{i:04}.log")), i);
    }
    // Symlinks: a loop, one to a file, one to a directory, one dangling.
    std::os::unix::fs::symlink(".", root.join("a/b/loop")).unwrap();
    std::os::unix::fs::symlink("../top.bin", root.join("a/link-to-file")).unwrap();
    std::os::unix::fs::symlink("/usr", root.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink("nowhere", root.join("dangling")).unwrap();
    // Neither a fifo nor a socket is a file to tier.
    rustix::fs::mknodat(
        CWD,
        root.join("a/fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(root.join("a/b/sock")).unwrap();
    // Written before the scan but with a future mtime: hot.
    write(&root.join("a/b/future.dat"), 10);
    set_mtime(
        &root.join("a/b/future.dat"),
        SystemTime::now() + Duration::from_secs(3600),
    );
    // An old mtime does not make a freshly changed file (ctime) cold.
    write(&root.join("fresh/old-mtime.dat"), 10);

    // Everything above is settled once the window has passed ...
    sleep(Duration::from_millis(2100));
    // ... except what is written now (both scans must start within the
    // 2 s window of these writes).
    set_mtime(
        &root.join("fresh/old-mtime.dat"),
        SystemTime::now() - Duration::from_secs(86_400),
    );
    write(&root.join("fresh/new.dat"), 10);
    write(&root.join("a/b/c/new.dat"), 10);
    let hot = [
        "a/b/future.dat",
        "fresh/old-mtime.dat",
        "fresh/new.dat",
        "a/b/c/new.dat",
    ];

    let mut want = reference_walk(root);
    for path in hot {
        assert!(want.remove(Path::new(path)).is_some(), "{path}");
    }
    for recheck in [false, true] {
        let options = ScanOptions::default()
            .workers(3)
            .settle(Duration::from_secs(2))
            .channel_capacity(64)
            .dir_queue_capacity(2)
            .recheck(recheck);
        let (got, stats) = collect(scan(root, &options).unwrap());
        check_against_reference(&got, &stats, &want, hot.len() as u64);
    }
}

fn check_against_reference(
    got: &BTreeMap<PathBuf, FileFacts>,
    stats: &ScanStats,
    want: &BTreeMap<PathBuf, fs::Metadata>,
    hot: u64,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (path, meta) in want {
        let facts = &got[path];
        assert_eq!(facts.size, meta.len(), "{path:?}");
        assert_eq!(facts.ino, meta.ino(), "{path:?}");
        assert_eq!(facts.dev, meta.dev(), "{path:?}");
        assert_eq!(facts.mtime, meta.modified().unwrap(), "{path:?}");
        assert_eq!(facts.atime, meta.accessed().unwrap(), "{path:?}");
        assert_eq!(
            facts
                .ctime
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64,
            meta.ctime()
        );
    }
    assert_eq!(stats.files, want.len() as u64);
    assert_eq!(stats.bytes, want.values().map(|m| m.len()).sum::<u64>());
    assert_eq!(stats.skipped_hot, hot);
    // Every hot file above is 10 bytes.
    assert_eq!(stats.skipped_hot_bytes, hot * 10);
    assert_eq!(stats.errors, 0);
    // root, a, a/b, a/b/c, a/b/c/d, a/b/c/d/e, wide, empty, empty/dir, many, fresh
    assert_eq!(stats.dirs, 11);
}

#[test]
fn files_within_the_settle_window_are_counted_with_their_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    // Just written: its mtime is new.
    write(&root.join("new.dat"), 1000);
    // Back-dated by hand, as a user preparing a demo would: the mtime is a
    // day old, but setting it made the ctime new, so it still settles.
    write(&root.join("sub/back-dated.dat"), 3000);
    fs::File::options()
        .write(true)
        .open(root.join("sub/back-dated.dat"))
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(86_400))
        .unwrap();
    let meta = fs::metadata(root.join("sub/back-dated.dat")).unwrap();
    assert!(meta.modified().unwrap() < SystemTime::now() - Duration::from_secs(3600));

    let hour = ScanOptions::default().settle(Duration::from_secs(3600));
    let (got, stats) = collect(scan(root, &hour).unwrap());
    assert!(got.is_empty(), "{got:?}");
    assert_eq!((stats.files, stats.bytes), (0, 0));
    assert_eq!((stats.skipped_hot, stats.skipped_hot_bytes), (2, 4000));

    // Without a window both are reported and none is counted as held back
    // (the kernel stamps with a clock that never runs ahead of ours).
    let none = ScanOptions::default().settle(Duration::ZERO);
    let (got, stats) = collect(scan(root, &none).unwrap());
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!((stats.files, stats.bytes), (2, 4000));
    assert_eq!((stats.skipped_hot, stats.skipped_hot_bytes), (0, 0));
}

#[test]
fn stream_is_bounded_by_the_channel_capacity() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        write(&tmp.path().join(format!("d{}/f{i}", i % 20)), 1);
    }
    let capacity = 16;
    let options = ScanOptions::default()
        .workers(2)
        .settle(Duration::ZERO)
        .channel_capacity(capacity);
    let mut scan = scan(tmp.path(), &options).unwrap();
    let mut received = 0u64;
    for _ in 0..3 {
        assert!(scan.next().is_some());
        received += 1;
        // A slow consumer: the walk must wait for it.
        sleep(Duration::from_millis(200));
        let sent = scan.stats().files;
        assert!(
            sent <= received + capacity as u64,
            "sent {sent}, received {received}"
        );
        assert!(sent >= capacity as u64, "the walk stalled at {sent}");
    }
    received += scan.by_ref().count() as u64;
    assert_eq!(received, 2000);
    let stats = scan.finish().unwrap();
    assert_eq!((stats.files, stats.bytes, stats.dirs), (2000, 2000, 21));
}

/// Makes `root/name/d/d/…/d/file` with `levels` directories, relative to open
/// descriptors: the path is longer than PATH_MAX.
fn deep_chain(root: &Path, name: &str, levels: usize) {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    mkdirat(CWD, root.join(name), Mode::from_raw_mode(0o755)).unwrap();
    let mut dir = openat(CWD, root.join(name), flags, Mode::empty()).unwrap();
    for _ in 1..levels {
        mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
        dir = openat(&dir, "d", flags, Mode::empty()).unwrap();
    }
    let file = openat(
        &dir,
        "file",
        OFlags::CREATE | OFlags::WRONLY,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    drop(file);
}

#[test]
fn an_entry_that_fails_is_counted_and_the_scan_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    // One worker and a queue of one: of the two chains, the one listed second
    // finds the queue full and is read inline, where it ends too deep.
    let levels = MAX_INLINE_DEPTH + 3;
    deep_chain(tmp.path(), "x", levels);
    deep_chain(tmp.path(), "y", levels);
    write(&tmp.path().join("top"), 5);
    let options = ScanOptions::default()
        .workers(1)
        .dir_queue_capacity(1)
        .settle(Duration::ZERO);
    let (got, stats) = collect(scan(tmp.path(), &options).unwrap());
    assert_eq!(stats.errors, 1, "{stats:?}");
    assert_eq!(stats.files, 2, "{stats:?}");
    assert!(got.contains_key(Path::new("top")));
    let deep = got.keys().find(|p| p.ends_with("file")).unwrap();
    assert_eq!(deep.components().count(), levels + 1);
}

#[test]
fn dropping_a_scan_stops_the_walk() {
    let tmp = tempfile::tempdir().unwrap();
    for i in 0..500 {
        write(&tmp.path().join(format!("d{}/f{i}", i % 10)), 1);
    }
    let options = ScanOptions::default()
        .settle(Duration::ZERO)
        .channel_capacity(4);
    let mut scan = scan(tmp.path(), &options).unwrap();
    assert!(scan.next().is_some());
    let stats = scan.finish().unwrap();
    assert!(stats.files < 500, "{stats:?}");
}

#[test]
fn bad_roots_and_options_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing");
    let err = scan(&missing, &ScanOptions::default()).unwrap_err();
    assert!(matches!(err, ScanError::Root { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    write(&tmp.path().join("file"), 1);
    let err = scan(&tmp.path().join("file"), &ScanOptions::default()).unwrap_err();
    assert!(matches!(err, ScanError::Root { .. }), "{err}");
    let err = scan(tmp.path(), &ScanOptions::default().workers(0)).unwrap_err();
    assert_eq!(err.to_string(), "scan options: workers: must be at least 1");
    let err = scan(tmp.path(), &ScanOptions::default().channel_capacity(0)).unwrap_err();
    assert!(matches!(
        err,
        ScanError::Options {
            field: "channel_capacity",
            ..
        }
    ));
}

#[test]
fn files_vanishing_during_the_walk_are_counted_never_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    for i in 0..200 {
        write(&root.join(format!("stable/{i}")), 1);
        write(&root.join(format!("churn/{i}")), 1);
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let (root, stop) = (root.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = fs::remove_file(root.join(format!("churn/{}", i % 200)));
                let _ = fs::remove_dir_all(root.join(format!("churn-dir-{}", i % 7)));
                write(&root.join(format!("churn/{}", (i + 100) % 200)), 1);
                write(&root.join(format!("churn-dir-{}/f", (i + 3) % 7)), 1);
                i += 1;
            }
        })
    };
    let options = ScanOptions::default().settle(Duration::ZERO).workers(2);
    for _ in 0..20 {
        let mut scan = scan(&root, &options).unwrap();
        let received = scan
            .by_ref()
            .filter(|f| f.rel_path.starts_with("stable"))
            .count();
        let stats = scan.finish().unwrap();
        // Every stable file, whatever happened around it.
        assert_eq!(received, 200, "{stats:?}");
        assert!(stats.files >= 200, "{stats:?}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
}
