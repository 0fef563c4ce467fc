//! The agent works only on volumes within its bounds: beneath its volume
//! roots, not through a symlink, and clear of any catalog's own data. A `*`
//! move policy over volumes registered elsewhere (an /etc-like directory, a
//! replica's store, the agent's own catalog) scans, uploads, releases and
//! recalls nothing there, even with an intent forged into the catalog.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::Digest;
use strata_tiering::agent::{Agent, AgentOptions};
use strata_tiering::bounds::VolumeBounds;
use strata_tiering::catalog::{
    CatalogClient, Command, FileFilter, FileKey, FileState, Intent, LogEntry, MemoryCatalog,
    Sha256, Timestamp, Volume, VolumeScope,
};
use strata_tiering::mover::{Mover, MoverOptions};
use strata_tiering::scan::ScanOptions;
use strata_tiering::service::{Engine, EngineError, Progress, RecallRequest, RunRequest};

const DAY: Duration = Duration::from_secs(86_400);

/// A file two days old, as a move rule of `modifiedBefore: 1d` picks it.
fn cold_file(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - 2 * DAY)
        .unwrap();
}

async fn propose(c: &MemoryCatalog, command: Command) {
    c.propose(LogEntry {
        by: None,
        at: Timestamp::now(),
        command,
    })
    .await
    .unwrap()
    .unwrap();
}

/// An intent for `file` of volume `volume` as a scan would have recorded
/// it: what someone with a certificate could forge.
fn forged_intent(volume: &str, rel: &str, file: &Path) -> Intent {
    let m = std::fs::metadata(file).unwrap();
    let data = std::fs::read(file).unwrap();
    let nanos = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as i64;
    Intent {
        key: FileKey::new(volume, rel),
        move_id: 7,
        size: m.len(),
        mtime_ns: nanos(m.modified().unwrap()),
        ino: m.ino(),
        dev: m.dev(),
        ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        sha256: Sha256(sha2::Sha256::digest(&data).into()),
        owner: None,
        lake_key: format!("forged/{rel}"),
        policy: "everything".into(),
        rule: "old".into(),
    }
}

fn lake_objects(lake: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.path());
            }
        }
    }
    let mut out = Vec::new();
    walk(lake, &mut out);
    out
}

#[tokio::test]
async fn volumes_outside_the_roots_or_on_catalog_data_are_never_touched() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let roots = base.join("volumes");
    let lake = base.join("lake");
    std::fs::create_dir_all(&lake).unwrap();

    // Within bounds: the control, which the policy does move.
    cold_file(&roots.join("good/a.txt"), "good");
    // Outside the roots: an /etc-like directory.
    let etc = base.join("etc");
    cold_file(&etc.join("shadow"), "root:x:0:0");
    // The agent's own catalog (reserved), and a replica's found on disk.
    let own = roots.join("agent/catalog");
    cold_file(&own.join("000012.sst"), "own catalog");
    let replica = roots.join("replica/catalog");
    cold_file(&replica.join("000042.sst"), "replica catalog");
    cold_file(&replica.join("CURRENT"), "MANIFEST-000001\n");
    cold_file(&replica.join("IDENTITY.json"), "{}");
    // Beneath the roots, through a symlink to the /etc-like directory.
    std::os::unix::fs::symlink(&etc, roots.join("link")).unwrap();

    let bad = [
        ("keys", etc.clone(), "not beneath a volume root"),
        ("own-store", own.clone(), "is the catalog's own data"),
        (
            "own-data-dir",
            roots.join("agent"),
            "contains the catalog's own data",
        ),
        (
            "replica-store",
            replica.clone(),
            "is the catalog's own data",
        ),
        (
            "replica-data-dir",
            roots.join("replica"),
            "contains the catalog's own data",
        ),
        ("through-link", roots.join("link"), "a symlink"),
    ];

    let catalog = Arc::new(MemoryCatalog::new());
    let scope = VolumeScope::every_node()
        .within(VolumeBounds::within(vec![roots.clone()]).reserve(own.clone()));
    let mover = Mover::new(
        catalog.clone(),
        MoverOptions::default()
            .scan(ScanOptions::default().settle(Duration::ZERO))
            .scope(scope),
    );
    let agent = Agent::new(mover, AgentOptions::default());

    // Registered straight in the catalog, as a certificate holder could.
    for (id, path) in bad
        .iter()
        .map(|(id, p, _)| (*id, p.clone()))
        .chain([("good", roots.join("good"))])
    {
        propose(
            &catalog,
            Command::RegisterVolume(Volume {
                id: id.into(),
                path: path.display().to_string(),
                labels: Default::default(),
            }),
        )
        .await;
    }
    propose(
        &catalog,
        Command::PutPolicy {
            name: "everything".into(),
            spec: format!(
                "name: everything\nselector: {{volumes: [\"*\"]}}\n\
                 lake: {{url: \"file://{}\"}}\n\
                 rules:\n  - name: old\n    modifiedBefore: 1d\n    action: move\n",
                lake.display()
            ),
        },
    )
    .await;
    // And an intent forged for the /etc-like file: a drain must not upload it.
    let shadow = etc.join("shadow");
    propose(
        &catalog,
        Command::RecordIntent(forged_intent("keys", "shadow", &shadow)),
    )
    .await;

    let runs = agent.run_now(RunRequest::default()).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.volume.as_str()).collect::<Vec<_>>(),
        ["good"],
        "only the volume within bounds is run"
    );
    agent.tick(SystemTime::now()).await.unwrap();

    // The control moved: the policy would have moved the others' files.
    assert!(!roots.join("good/a.txt").exists());
    // Everything else stays, byte for byte.
    assert_eq!(std::fs::read_to_string(&shadow).unwrap(), "root:x:0:0");
    assert_eq!(
        std::fs::read_to_string(own.join("000012.sst")).unwrap(),
        "own catalog"
    );
    assert_eq!(
        std::fs::read_to_string(replica.join("000042.sst")).unwrap(),
        "replica catalog"
    );
    // Nothing recorded for them but the forged intent, which never advanced.
    let records = catalog
        .read(|s| {
            s.files(&FileFilter::default(), None, usize::MAX)
                .items
                .into_iter()
                .map(|r| (r.key.volume.clone(), r.key.path.clone(), r.state))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
    assert_eq!(
        records,
        [
            ("good".to_owned(), "a.txt".to_owned(), FileState::Released),
            ("keys".to_owned(), "shadow".to_owned(), FileState::Intent),
        ]
    );
    // The lake holds the control's object only.
    let objects = lake_objects(&lake);
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert_eq!(std::fs::read_to_string(&objects[0]).unwrap(), "good");

    // Each refused volume says why.
    let refused = agent.refused();
    for (id, path, why) in &bad {
        let got = refused
            .get(*id)
            .unwrap_or_else(|| panic!("{id} not refused: {refused:?}"));
        assert!(
            got.starts_with(&format!("{}: ", path.display())) && got.contains(why),
            "{id}: {got}"
        );
    }
    assert!(!refused.contains_key("good"), "{refused:?}");
    assert!(refused["keys"].contains(&roots.display().to_string()));

    // Asked for by name, a refused volume is refused with the reason.
    let e = agent
        .run_now(RunRequest {
            volume: Some("keys".into()),
            policy: None,
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EngineError::Busy(m) if m.contains("not beneath a volume root")),
        "{e:?}"
    );
    let e = agent
        .recall(
            RecallRequest {
                volume: "through-link".into(),
                glob: "**".into(),
            },
            Progress::new(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EngineError::Busy(m) if m.contains("a symlink")),
        "{e:?}"
    );
    // And the API's volume add refuses such a path up front.
    let e = agent
        .check_volume_path(&etc.display().to_string())
        .unwrap_err();
    assert_eq!(
        e,
        format!(
            "{}: not beneath a volume root of this node ({})",
            etc.display(),
            roots.display()
        )
    );
    assert_eq!(
        agent.check_volume_path(&roots.join("good").display().to_string()),
        Ok(())
    );
}
