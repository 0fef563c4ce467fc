//! The tiering gRPC service over a real unix socket: a tonic server with the
//! in-memory catalog and a stand-in for the mover, a tonic client, every RPC
//! with its answers, its error codes and messages, and pagination.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_proto::strata::v1 as pb;
use strata_proto::strata::v1::tiering_client::TieringClient;
use strata_tiering::catalog::{
    Applied, CatalogClient, CatalogError, Command, FileKey, Intent, LogEntry, MemoryCatalog,
    Rejected, RunSummary, Sha256, State, Timestamp, Volume,
};
use strata_tiering::service::{
    CatalogInfo, Engine, EngineError, Listener, Progress, RecallFailure, RecallOutcome,
    RecallProgress, RecallRequest, RunRequest, TieringService,
};
use strata_tiering::site_zone::SiteZone;
use tempfile::TempDir;
use tokio::sync::{Notify, oneshot};
use tonic::transport::Channel;
use tonic::{Code, Status};

const POLICY: &str = r#"
name: cold-images
schedule: "0 * * * *"
lake: {url: "file:///srv/lake"}
rules:
  - name: old-jpgs
    include: ["**/*.jpg"]
    modifiedBefore: 7d
    action: move
"#;

/// What the service asked of the engine.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    RunNow(RunRequest),
    Recall(RecallRequest),
}

/// Stands in for the mover (tiering/src/mover*): records every call and
/// answers what the test set up.
struct StandInMover {
    calls: Mutex<Vec<Call>>,
    run_answer: Mutex<Result<Vec<RunSummary>, EngineError>>,
    recall_steps: Vec<RecallProgress>,
    recall_answer: Mutex<Result<RecallOutcome, EngineError>>,
    /// When set, a recall waits for it after its first report.
    recall_gate: Option<Arc<Notify>>,
    recall_finished: AtomicBool,
    lake: Option<bool>,
    zone: Option<SiteZone>,
}

impl Default for StandInMover {
    fn default() -> Self {
        Self {
            calls: Mutex::default(),
            run_answer: Mutex::new(Ok(Vec::new())),
            recall_steps: Vec::new(),
            recall_answer: Mutex::new(Ok(RecallOutcome::default())),
            recall_gate: None,
            recall_finished: AtomicBool::new(false),
            lake: None,
            zone: None,
        }
    }
}

impl StandInMover {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Engine for StandInMover {
    async fn run_now(&self, request: RunRequest) -> Result<Vec<RunSummary>, EngineError> {
        self.calls.lock().unwrap().push(Call::RunNow(request));
        self.run_answer.lock().unwrap().clone()
    }

    async fn recall(
        &self,
        request: RecallRequest,
        progress: Progress,
    ) -> Result<RecallOutcome, EngineError> {
        self.calls.lock().unwrap().push(Call::Recall(request));
        for (i, step) in self.recall_steps.iter().enumerate() {
            progress.report(step.clone());
            if i == 0
                && let Some(gate) = &self.recall_gate
            {
                gate.notified().await;
            }
            // Let the service forward each report before the next replaces it.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.recall_finished.store(true, Ordering::SeqCst);
        self.recall_answer.lock().unwrap().clone()
    }

    fn lake_up(&self) -> Option<bool> {
        self.lake
    }

    fn site_zone(&self) -> Option<&SiteZone> {
        self.zone.as_ref()
    }
}

/// A catalog that cannot answer: as one without quorum, or with a failed disk.
struct BrokenCatalog(CatalogError);

impl CatalogClient for BrokenCatalog {
    async fn propose(&self, _: LogEntry) -> Result<Result<Applied, Rejected>, CatalogError> {
        Err(self.0.clone())
    }

    async fn read<T, F>(&self, _: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> T + Send + 'static,
    {
        Err(self.0.clone())
    }
}

/// A served service and a client connected to it over a unix socket.
struct Served {
    client: TieringClient<Channel>,
    dir: TempDir,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    async fn start<C: CatalogClient>(
        catalog: Arc<C>,
        engine: Arc<StandInMover>,
        info: Option<CatalogInfo>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sock").join("strata.sock");
        let endpoint = format!("unix://{}", socket.display());
        let listener = Listener::bind(&endpoint).await.unwrap();
        let mut service = TieringService::new(catalog, engine);
        if let Some(info) = info {
            service = service.with_catalog_info(move || info.clone());
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            service
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        let client = TieringClient::connect(endpoint).await.unwrap();
        Self {
            client,
            dir,
            stop: Some(stop),
            server: Some(server),
        }
    }

    async fn memory(engine: StandInMover) -> (Self, Arc<MemoryCatalog>, Arc<StandInMover>) {
        let catalog = Arc::new(MemoryCatalog::new());
        let engine = Arc::new(engine);
        let served = Self::start(catalog.clone(), engine.clone(), None).await;
        (served, catalog, engine)
    }

    /// A directory that exists, to register as a volume.
    fn volume_dir(&self, name: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        p.to_str().unwrap().to_owned()
    }

    /// Stops the server and waits for it; answers the directory, still there.
    async fn stop(mut self) -> TempDir {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap();
        self.dir
    }
}

fn assert_status(s: &Status, code: Code, message: &str) {
    assert_eq!((s.code(), s.message()), (code, message), "{s:?}");
}

async fn propose(catalog: &MemoryCatalog, at: u64, command: Command) {
    let entry = LogEntry {
        by: None,
        at: Timestamp::from_unix_nanos(at),
        command,
    };
    catalog.propose(entry).await.unwrap().unwrap();
}

async fn register(catalog: &MemoryCatalog, id: &str) {
    let volume = Volume {
        id: id.into(),
        path: format!("/srv/{id}"),
        labels: Default::default(),
    };
    propose(catalog, 1, Command::RegisterVolume(volume)).await;
}

/// Records a move of `volume:path` of `size` bytes and takes it to `state`
/// (`intent`, `uploaded`, `archived` or `released`).
async fn seed_file(catalog: &MemoryCatalog, volume: &str, path: &str, size: u64, state: &str) {
    let key = FileKey::new(volume, path);
    let sha256 = Sha256([size as u8; 32]);
    let intent = Intent {
        key: key.clone(),
        move_id: 7,
        size,
        mtime_ns: 1_000,
        ino: 42,
        dev: 7,
        ctime_ns: 2_000,
        sha256,
        owner: None,
        lake_key: format!("{volume}/{path}"),
        policy: "cold-images".into(),
        rule: "old-jpgs".into(),
    };
    propose(catalog, 10, Command::RecordIntent(intent)).await;
    if state == "intent" {
        return;
    }
    let move_id = 7;
    propose(
        catalog,
        11,
        Command::MarkUploaded {
            key: key.clone(),
            move_id,
            sha256,
        },
    )
    .await;
    if state == "uploaded" {
        return;
    }
    let archived = Command::MarkArchived {
        key: key.clone(),
        move_id,
        sha256,
        size,
        lake: Some("s3://lake/site-a".into()),
        verified_at: None,
    };
    propose(catalog, 12, archived).await;
    if state == "archived" {
        return;
    }
    let released = Command::MarkReleased {
        key,
        move_id,
        sha256,
        size,
        mtime_ns: 1_000,
        ino: 42,
        dev: 7,
        ctime_ns: 2_000,
    };
    propose(catalog, 13, released).await;
}

fn run_summary(id: &str, finished: u64) -> RunSummary {
    RunSummary {
        id: id.into(),
        policy: "cold-images".into(),
        volume: "line-3".into(),
        started_at: Timestamp::from_unix_nanos(finished - 5),
        finished_at: Timestamp::from_unix_nanos(finished),
        files: 3,
        bytes: 300,
        errors: 1,
        settling_files: 2,
        settling_bytes: 2048,
        settle: Some(std::time::Duration::from_secs(60)),
        free_goal: None,
    }
}

#[tokio::test]
async fn apply_list_and_delete_policies() {
    let (mut s, _, _) = Served::memory(StandInMover::default()).await;
    let apply = |yaml: &str| pb::ApplyPolicyRequest { yaml: yaml.into() };

    let r = s
        .client
        .apply_policy(apply(POLICY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.name.as_str(), r.change()),
        ("cold-images", pb::Change::Created)
    );
    let r = s
        .client
        .apply_policy(apply(POLICY))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.change(), pb::Change::Unchanged);
    let changed = POLICY.replace("7d", "30d");
    let r = s
        .client
        .apply_policy(apply(&changed))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.change(), pb::Change::Updated);

    let list = s
        .client
        .list_policies(pb::ListPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.policies.len(), 1);
    let p = &list.policies[0];
    assert_eq!(p.name, "cold-images");
    assert_eq!(p.spec, changed);
    assert_eq!(p.schedule, "0 * * * *");
    assert_eq!(p.lake_url, "file:///srv/lake");
    assert_eq!(p.rules, ["old-jpgs"]);
    assert!(p.updated_at.is_some_and(|t| t.seconds > 1_600_000_000));

    let del = |name: &str| pb::DeletePolicyRequest { name: name.into() };
    s.client.delete_policy(del("cold-images")).await.unwrap();
    let e = s
        .client
        .delete_policy(del("cold-images"))
        .await
        .unwrap_err();
    assert_status(&e, Code::NotFound, "policy cold-images: not found");
    let e = s.client.delete_policy(del("")).await.unwrap_err();
    assert_status(&e, Code::InvalidArgument, "name: must not be empty");
    let list = s
        .client
        .list_policies(pb::ListPoliciesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.policies.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_bad_policy_is_refused_with_every_error_by_path() {
    let (mut s, catalog, _) = Served::memory(StandInMover::default()).await;
    let bad = POLICY
        .replace("modifiedBefore: 7d", "modifiedBefore: soon")
        .replace("file:///srv/lake", "ftp://lake");
    let e = s
        .client
        .apply_policy(pb::ApplyPolicyRequest { yaml: bad })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let lines: Vec<&str> = e.message().lines().collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines.iter().any(|l| l.starts_with("lake.url: ")),
        "{lines:?}"
    );
    assert!(
        lines.contains(
            &"rules[0].modifiedBefore: expected a duration like 7d, got \"soon\" (units: s, m, h, d, w)"
        ),
        "{lines:?}"
    );
    // Nothing was stored.
    assert_eq!(catalog.read(|s| s.policies().count()).await.unwrap(), 0);
    s.stop().await;
}

#[tokio::test]
async fn add_list_and_remove_volumes() {
    let (mut s, catalog, _) = Served::memory(StandInMover::default()).await;
    let path = s.volume_dir("line-3");
    let add = |labels: &[(&str, &str)]| pb::AddVolumeRequest {
        id: "line-3/cam-1".into(),
        path: format!("{path}/"),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let r = s
        .client
        .add_volume(add(&[("app", "inspection")]))
        .await
        .unwrap();
    assert_eq!(r.into_inner().change(), pb::Change::Created);
    let r = s
        .client
        .add_volume(add(&[("app", "inspection")]))
        .await
        .unwrap();
    assert_eq!(r.into_inner().change(), pb::Change::Unchanged);
    let r = s.client.add_volume(add(&[("app", "qa")])).await.unwrap();
    assert_eq!(r.into_inner().change(), pb::Change::Updated);

    seed_file(&catalog, "line-3/cam-1", "a.jpg", 100, "intent").await;
    seed_file(&catalog, "line-3/cam-1", "b.jpg", 50, "archived").await;
    let list = s
        .client
        .list_volumes(pb::ListVolumesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.volumes.len(), 1);
    let v = &list.volumes[0];
    // The trailing slash is not part of the stored path.
    assert_eq!(
        (v.id.as_str(), v.path.as_str()),
        ("line-3/cam-1", path.as_str())
    );
    assert_eq!(v.labels.get("app").map(String::as_str), Some("qa"));
    let b = v.backlog.unwrap();
    assert_eq!((b.files, b.bytes), (1, 100));
    assert!(b.oldest_age.is_some());

    let rm = |id: &str| pb::RemoveVolumeRequest { id: id.into() };
    s.client.remove_volume(rm("line-3/cam-1")).await.unwrap();
    let e = s
        .client
        .remove_volume(rm("line-3/cam-1"))
        .await
        .unwrap_err();
    assert_status(&e, Code::NotFound, "volume line-3/cam-1: not registered");
    let e = s.client.remove_volume(rm("")).await.unwrap_err();
    assert_status(&e, Code::InvalidArgument, "id: must not be empty");
    let list = s
        .client
        .list_volumes(pb::ListVolumesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(list.volumes.is_empty());
    s.stop().await;
}

#[tokio::test]
async fn bad_volumes_are_refused_naming_the_field() {
    let (mut s, catalog, _) = Served::memory(StandInMover::default()).await;
    let dir = s.volume_dir("ok");
    let file = format!("{dir}/plain-file");
    std::fs::write(&file, b"x").unwrap();
    let missing = format!("{dir}/missing");
    // (id, path, labels, message)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, String);
    let cases: Vec<Case> = vec![
        ("", &dir, vec![], "id: must not be empty".into()),
        (
            "line 3",
            &dir,
            vec![],
            "id: ' ' is not allowed (letters, digits, '.', '_', '-', '/')".into(),
        ),
        (
            "-x",
            &dir,
            vec![],
            "id: must start and end with a letter or digit".into(),
        ),
        ("v", "", vec![], "path: must not be empty".into()),
        (
            "v",
            "srv/line-3",
            vec![],
            "path: \"srv/line-3\" must be absolute".into(),
        ),
        (
            "v",
            &missing,
            vec![],
            format!("path: {missing}: no such directory"),
        ),
        ("v", &file, vec![], format!("path: {file}: not a directory")),
        (
            "v",
            &dir,
            vec![("", "x")],
            "labels: a key must not be empty".into(),
        ),
        (
            "v",
            &dir,
            vec![("a b", "x")],
            "labels.a b: ' ' is not allowed in a key (letters, digits, '.', '_', '-', '/')".into(),
        ),
        (
            "v",
            &dir,
            vec![("app", "a\nb")],
            "labels.app: value contains a control character".into(),
        ),
    ];
    for (id, path, labels, message) in cases {
        let req = pb::AddVolumeRequest {
            id: id.into(),
            path: path.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let e = s.client.add_volume(req).await.unwrap_err();
        assert_status(&e, Code::InvalidArgument, &message);
    }
    assert_eq!(catalog.read(|s| s.volumes().count()).await.unwrap(), 0);
    s.stop().await;
}

#[tokio::test]
async fn list_files_filters_and_pages() {
    let (mut s, catalog, _) = Served::memory(StandInMover::default()).await;
    register(&catalog, "a").await;
    register(&catalog, "b").await;
    let states = ["intent", "uploaded", "archived", "released"];
    for i in 0..25u64 {
        let state = states[i as usize % 4];
        seed_file(&catalog, "a", &format!("img/{i:02}.jpg"), 10 + i, state).await;
    }
    for i in 0..5u64 {
        seed_file(&catalog, "b", &format!("logs/{i}.txt"), 1, "intent").await;
    }

    // All of them, 10 at a time: 3 pages, then no token.
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let req = pb::ListFilesRequest {
            limit: 10,
            page_token: token.clone(),
            ..Default::default()
        };
        let page = s.client.list_files(req).await.unwrap().into_inner();
        pages += 1;
        assert!(page.files.len() <= 10);
        seen.extend(
            page.files
                .iter()
                .map(|f| format!("{}:{}", f.volume, f.path)),
        );
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 30);
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "key order");
    assert_eq!(seen[0], "a:img/00.jpg");
    assert_eq!(seen[29], "b:logs/4.txt");

    // By state, volume and prefix.
    let req = pb::ListFilesRequest {
        state: pb::FileState::Released.into(),
        volume: "a".into(),
        path_prefix: "img/1".into(),
        ..Default::default()
    };
    let page = s.client.list_files(req).await.unwrap().into_inner();
    let paths: Vec<&str> = page.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["img/11.jpg", "img/15.jpg", "img/19.jpg"]);
    assert!(page.next_page_token.is_empty());
    let f = &page.files[0];
    assert_eq!(f.state(), pb::FileState::Released);
    assert_eq!((f.size, f.attempts, f.move_id), (21, 0, 7));
    assert_eq!(f.sha256, "15".repeat(32));
    assert_eq!(
        (f.policy.as_str(), f.rule.as_str()),
        ("cold-images", "old-jpgs")
    );
    assert_eq!(f.lake_key, "a/img/11.jpg");
    assert_eq!(f.mtime.unwrap().nanos, 1_000);

    // Pages within one volume.
    let req = pb::ListFilesRequest {
        volume: "b".into(),
        limit: 2,
        ..Default::default()
    };
    let first = s.client.list_files(req.clone()).await.unwrap().into_inner();
    let req = pb::ListFilesRequest {
        page_token: first.next_page_token,
        ..req
    };
    let second = s.client.list_files(req).await.unwrap().into_inner();
    let paths: Vec<&str> = second.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["logs/2.txt", "logs/3.txt"]);

    // 0 is the default page of 100; more than 1000 is 1000.
    let page = s
        .client
        .list_files(pb::ListFilesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.files.len(), 30);
    let req = pb::ListFilesRequest {
        limit: u32::MAX,
        ..Default::default()
    };
    assert_eq!(
        s.client
            .list_files(req)
            .await
            .unwrap()
            .into_inner()
            .files
            .len(),
        30
    );

    let req = pb::ListFilesRequest {
        page_token: "nonsense".into(),
        ..Default::default()
    };
    let e = s.client.list_files(req).await.unwrap_err();
    assert_status(
        &e,
        Code::InvalidArgument,
        "page_token: malformed (pass next_page_token as it came)",
    );
    let req = pb::ListFilesRequest {
        state: 99,
        ..Default::default()
    };
    let e = s.client.list_files(req).await.unwrap_err();
    assert_status(&e, Code::InvalidArgument, "state: unknown file state 99");
    s.stop().await;
}

#[tokio::test]
async fn status_shows_one_screen() {
    let engine = StandInMover {
        lake: Some(false),
        zone: Some(SiteZone::named("Europe/Berlin").unwrap()),
        ..Default::default()
    };
    let catalog = Arc::new(MemoryCatalog::new());
    let info = CatalogInfo {
        role: Some("leader".into()),
        term: Some(3),
        leader: Some("node-1".into()),
        applied_index: None,
    };
    let mut s = Served::start(catalog.clone(), Arc::new(engine), Some(info)).await;
    register(&catalog, "line-3").await;
    s.client
        .apply_policy(pb::ApplyPolicyRequest {
            yaml: POLICY.into(),
        })
        .await
        .unwrap();
    seed_file(&catalog, "line-3", "a.jpg", 100, "intent").await;
    seed_file(&catalog, "line-3", "b.jpg", 20, "uploaded").await;
    seed_file(&catalog, "line-3", "c.jpg", 7, "released").await;
    for i in 0..12 {
        propose(
            &catalog,
            100,
            Command::RecordRun(run_summary(&format!("run-{i:02}"), 1_000 + i)),
        )
        .await;
    }

    let st = s
        .client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.volumes.len(), 1);
    assert_eq!(st.volumes[0].backlog.unwrap().files, 2);
    assert_eq!(st.policies.len(), 1);
    assert_eq!(st.policies[0].rules, ["old-jpgs"]);
    let b = st.backlog.unwrap();
    assert_eq!((b.files, b.bytes), (2, 120));
    // The intents were stamped in 1970: the oldest has waited for decades.
    assert!(b.oldest_age.unwrap().seconds > 50 * 365 * 86_400);
    assert_eq!(st.lake(), pb::LakeReachability::Down);
    assert_eq!(st.last_runs.len(), 10);
    assert_eq!(st.last_runs[0].id, "run-11");
    assert_eq!(st.last_runs[0].errors, 1);
    let counts: Vec<(pb::FileState, u64, u64)> = st
        .counts
        .iter()
        .map(|c| (c.state(), c.files, c.bytes))
        .collect();
    assert_eq!(
        counts,
        [
            (pb::FileState::Intent, 1, 100),
            (pb::FileState::Uploaded, 1, 20),
            (pb::FileState::Archived, 0, 0),
            (pb::FileState::Released, 1, 7),
            (pb::FileState::Recalled, 0, 0),
            (pb::FileState::Abandoned, 0, 0),
        ]
    );
    let c = st.catalog.clone().unwrap();
    assert_eq!(c.role.as_deref(), Some("leader"));
    assert_eq!((c.term, c.leader.as_deref()), (Some(3), Some("node-1")));
    // Not given by the Raft layer: read from the state machine.
    let applied = catalog.read(|s| s.last_applied()).await.unwrap();
    assert_eq!(c.applied_index, applied);
    assert!(st.now.is_some());
    assert_eq!(
        st.site_timezone,
        Some(pb::SiteTimeZone {
            name: "Europe/Berlin".into(),
            source: "--site-timezone".into(),
        })
    );
    s.stop().await;

    // Without catalog info and before the lake was tried: unknowns stay unset.
    let (mut s, _, _) = Served::memory(StandInMover::default()).await;
    let st = s
        .client
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.lake(), pb::LakeReachability::Unknown);
    let c = st.catalog.clone().unwrap();
    assert_eq!(
        (c.role, c.term, c.leader, c.applied_index),
        (None, None, None, None)
    );
    assert!(st.backlog.unwrap().oldest_age.is_none());
    // An engine without a zone: none is shown.
    assert_eq!(st.site_timezone, None);
    s.stop().await;
}

#[tokio::test]
async fn run_now_asks_the_engine_and_returns_its_runs() {
    let engine = StandInMover {
        run_answer: Mutex::new(Ok(vec![run_summary("r1", 2_000_000_000)])),
        ..Default::default()
    };
    let (mut s, catalog, engine) = Served::memory(engine).await;
    register(&catalog, "line-3").await;
    s.client
        .apply_policy(pb::ApplyPolicyRequest {
            yaml: POLICY.into(),
        })
        .await
        .unwrap();

    let r = s
        .client
        .run_now(pb::RunNowRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.runs.len(), 1);
    let run = &r.runs[0];
    assert_eq!(
        (run.id.as_str(), run.files, run.bytes, run.errors),
        ("r1", 3, 300, 1)
    );
    assert_eq!(run.finished_at.unwrap().seconds, 2);
    // What the settle window held back reaches the answer with the window.
    assert_eq!((run.settling_files, run.settling_bytes), (2, 2048));
    assert_eq!(run.settle.unwrap().seconds, 60);
    let req = pb::RunNowRequest {
        policy: "cold-images".into(),
        volume: "line-3".into(),
    };
    s.client.run_now(req).await.unwrap();
    assert_eq!(
        engine.calls(),
        [
            Call::RunNow(RunRequest {
                policy: None,
                volume: None
            }),
            Call::RunNow(RunRequest {
                policy: Some("cold-images".into()),
                volume: Some("line-3".into())
            }),
        ]
    );

    let req = pb::RunNowRequest {
        policy: "hot".into(),
        ..Default::default()
    };
    let e = s.client.run_now(req).await.unwrap_err();
    assert_status(&e, Code::NotFound, "policy hot: not found");
    let req = pb::RunNowRequest {
        volume: "nope".into(),
        ..Default::default()
    };
    let e = s.client.run_now(req).await.unwrap_err();
    assert_status(&e, Code::NotFound, "volume nope: not registered");
    assert_eq!(
        engine.calls().len(),
        2,
        "refused requests never reach the engine"
    );

    for (err, code, message) in [
        (
            EngineError::Busy("a run of cold-images is going".into()),
            Code::FailedPrecondition,
            "a run of cold-images is going",
        ),
        (
            EngineError::LakeUnavailable("connection refused".into()),
            Code::Unavailable,
            "lake unavailable: connection refused",
        ),
        (
            EngineError::Internal("scanner died".into()),
            Code::Internal,
            "scanner died",
        ),
        (
            EngineError::Catalog(CatalogError::Unavailable("no quorum".into())),
            Code::Unavailable,
            "catalog unavailable: no quorum",
        ),
    ] {
        *engine.run_answer.lock().unwrap() = Err(err);
        let e = s
            .client
            .run_now(pb::RunNowRequest::default())
            .await
            .unwrap_err();
        assert_status(&e, code, message);
    }
    s.stop().await;
}

fn step(files_done: u64, bytes_done: u64, current: &str) -> RecallProgress {
    RecallProgress {
        files_done,
        files_total: 2,
        bytes_done,
        bytes_total: 30,
        current: Some(current.into()),
    }
}

#[tokio::test]
async fn recall_streams_progress_then_the_result() {
    let engine = StandInMover {
        recall_steps: vec![step(0, 0, "a.jpg"), step(1, 10, "b.jpg"), step(2, 30, "")],
        recall_answer: Mutex::new(Ok(RecallOutcome {
            matched: 4,
            files: 1,
            bytes: 10,
            already_local: 1,
            conflicts: 1,
            failed: 1,
            failures: vec![RecallFailure {
                path: "b.jpg".into(),
                error: "checksum mismatch".into(),
            }],
        })),
        ..Default::default()
    };
    let (mut s, catalog, engine) = Served::memory(engine).await;
    register(&catalog, "line-3").await;
    let req = pb::RecallRequest {
        volume: "line-3".into(),
        glob: "**/*.jpg".into(),
    };
    let mut stream = s.client.recall(req).await.unwrap().into_inner();
    let mut progress = Vec::new();
    let mut result = None;
    while let Some(event) = stream.message().await.unwrap() {
        assert!(result.is_none(), "the result is the last event");
        match event.event.unwrap() {
            pb::recall_event::Event::Progress(p) => progress.push(p),
            pb::recall_event::Event::Result(r) => result = Some(r),
        }
    }
    let last = progress.last().unwrap();
    assert_eq!(
        (
            last.files_done,
            last.files_total,
            last.bytes_done,
            last.bytes_total
        ),
        (2, 2, 30, 30)
    );
    assert!(
        progress
            .windows(2)
            .all(|w| w[0].bytes_done <= w[1].bytes_done)
    );
    assert_eq!(progress[0].current, "a.jpg");
    let result = result.unwrap();
    assert_eq!((result.files, result.bytes), (1, 10));
    assert_eq!(
        (
            result.matched,
            result.already_local,
            result.conflicts,
            result.failed
        ),
        (4, 1, 1, 1)
    );
    assert_eq!(result.failures[0].path, "b.jpg");
    assert_eq!(result.failures[0].error, "checksum mismatch");
    assert_eq!(
        engine.calls(),
        [Call::Recall(RecallRequest {
            volume: "line-3".into(),
            glob: "**/*.jpg".into()
        })]
    );

    // The engine's error ends the stream with its status.
    *engine.recall_answer.lock().unwrap() = Err(EngineError::LakeUnavailable("timed out".into()));
    let req = pb::RecallRequest {
        volume: "line-3".into(),
        glob: "*".into(),
    };
    let mut stream = s.client.recall(req).await.unwrap().into_inner();
    let e = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("stream ended without the error"),
            Err(e) => break e,
        }
    };
    assert_status(&e, Code::Unavailable, "lake unavailable: timed out");
    s.stop().await;
}

#[tokio::test]
async fn bad_recalls_are_refused_before_the_engine() {
    let (mut s, catalog, engine) = Served::memory(StandInMover::default()).await;
    register(&catalog, "line-3").await;
    for (volume, glob, code, message) in [
        ("", "*", Code::InvalidArgument, "volume: must not be empty"),
        (
            "line-3",
            "",
            Code::InvalidArgument,
            "glob: must not be empty",
        ),
        (
            "line-3",
            "a/[",
            Code::InvalidArgument,
            "glob: invalid glob \"a/[\": unclosed character class; missing ']'",
        ),
        (
            "line-3",
            "/abs/*",
            Code::InvalidArgument,
            "glob: \"/abs/*\" starts with /, but paths are relative to the volume root",
        ),
        (
            "line-9",
            "*",
            Code::NotFound,
            "volume line-9: not registered",
        ),
    ] {
        let req = pb::RecallRequest {
            volume: volume.into(),
            glob: glob.into(),
        };
        let e = s.client.recall(req).await.unwrap_err();
        assert_status(&e, code, message);
    }
    assert!(engine.calls().is_empty());
    s.stop().await;
}

#[tokio::test]
async fn a_recall_goes_on_when_the_client_leaves() {
    let gate = Arc::new(Notify::new());
    let engine = StandInMover {
        recall_steps: vec![step(0, 0, "a.jpg"), step(2, 30, "")],
        recall_gate: Some(gate.clone()),
        ..Default::default()
    };
    let (mut s, catalog, engine) = Served::memory(engine).await;
    register(&catalog, "line-3").await;
    let req = pb::RecallRequest {
        volume: "line-3".into(),
        glob: "*".into(),
    };
    let mut stream = s.client.recall(req).await.unwrap().into_inner();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);
    gate.notify_one();
    tokio::time::timeout(Duration::from_secs(10), async {
        while !engine.recall_finished.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the recall finished without its client");
    s.stop().await;
}

#[tokio::test]
async fn catalog_failures_map_to_unavailable_and_internal() {
    for (error, code, message) in [
        (
            CatalogError::Unavailable("no leader".into()),
            Code::Unavailable,
            "catalog unavailable: no leader",
        ),
        (
            CatalogError::Storage("rocksdb: disk full".into()),
            Code::Internal,
            "catalog storage failed: rocksdb: disk full",
        ),
    ] {
        let catalog = Arc::new(BrokenCatalog(error));
        let mut s = Served::start(catalog, Arc::new(StandInMover::default()), None).await;
        let e = s
            .client
            .list_volumes(pb::ListVolumesRequest {})
            .await
            .unwrap_err();
        assert_status(&e, code, message);
        let e = s.client.status(pb::StatusRequest {}).await.unwrap_err();
        assert_status(&e, code, message);
        let e = s
            .client
            .delete_policy(pb::DeletePolicyRequest { name: "x".into() })
            .await
            .unwrap_err();
        assert_status(&e, code, message);
        let dir = s.volume_dir("v");
        let req = pb::AddVolumeRequest {
            id: "v".into(),
            path: dir,
            ..Default::default()
        };
        let e = s.client.add_volume(req).await.unwrap_err();
        assert_status(&e, code, message);
        s.stop().await;
    }
}

#[tokio::test]
async fn a_live_socket_is_not_taken_and_a_stale_one_is_replaced() {
    let (s, _, _) = Served::memory(StandInMover::default()).await;
    let socket = s.dir.path().join("sock").join("strata.sock");
    let endpoint = format!("unix://{}", socket.display());
    let e = Listener::bind(&endpoint).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: another server is listening on this socket",
            socket.display()
        )
    );
    let dir = s.stop().await;
    let dir = dir.path();
    // The server removed its socket when it stopped; a stale one is replaced.
    assert!(!socket.exists());
    let stale = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    drop(stale);
    assert!(socket.exists());
    Listener::bind(&endpoint).await.unwrap();
    // Anything that is not a socket is left alone.
    let plain = dir.join("plain");
    std::fs::write(&plain, b"keep me").unwrap();
    let e = Listener::bind(&format!("unix://{}", plain.display()))
        .await
        .unwrap_err();
    assert!(e.to_string().ends_with("exists and is not a socket"), "{e}");
    assert_eq!(std::fs::read(&plain).unwrap(), b"keep me");
    let e = Listener::bind("ftp://x").await.unwrap_err();
    assert!(
        e.to_string().starts_with("endpoint \"ftp://x\": expected"),
        "{e}"
    );
}

#[tokio::test]
async fn serves_on_tcp_too() {
    let listener = Listener::bind("tcp://127.0.0.1:0").await.unwrap();
    let endpoint = listener.endpoint();
    assert!(endpoint.starts_with("http://127.0.0.1:"), "{endpoint}");
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(strata_tiering::service::serve(
        listener,
        Arc::new(MemoryCatalog::new()),
        Arc::new(StandInMover::default()),
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = TieringClient::connect(endpoint).await.unwrap();
    let list = client
        .list_volumes(pb::ListVolumesRequest {})
        .await
        .unwrap();
    assert!(list.into_inner().volumes.is_empty());
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
