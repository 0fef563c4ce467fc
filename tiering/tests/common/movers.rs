//! Fixtures for the mover tests: volumes of deterministic files, lakes (a
//! local directory, or moto_server), policies, and a catalog that records
//! the order of what was proposed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use strata_tiering::catalog::{
    Applied, CatalogClient, CatalogError, Command, LogEntry, MemoryCatalog, Rejected, State, Volume,
};
use strata_tiering::lake::{Lake, LakeConfig};
use strata_tiering::policy::{Policy, parse_policy};

use super::moto::Moto;

pub const MIB: usize = 1024 * 1024;
pub const DAY: Duration = Duration::from_secs(86_400);

pub use super::data::bytes;

pub fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn test_env(k: &str) -> Option<String> {
    match k {
        "AWS_ACCESS_KEY_ID" => Some("testing".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("testing-secret".into()),
        _ => None,
    }
}

/// A lake for a test, with what keeps it alive.
pub struct TestLake {
    pub lake: Lake,
    /// The URL a policy names (the lake itself is opened with test options).
    pub url: String,
    pub moto: Option<Moto>,
    _dir: Option<tempfile::TempDir>,
}

const TUNING: [(&str, &str); 2] = [("multipart_threshold", "8MiB"), ("part_size", "5MiB")];

impl TestLake {
    pub fn local() -> TestLake {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/lake", dir.path().display());
        TestLake {
            _dir: Some(dir),
            ..TestLake::open_local(&url)
        }
    }

    /// A local lake that some other process (or test) owns.
    pub fn open_local(url: &str) -> TestLake {
        let config = LakeConfig::parse_with_env(url, TUNING, test_env).unwrap();
        TestLake {
            lake: Lake::open(&config).unwrap(),
            url: url.to_owned(),
            moto: None,
            _dir: None,
        }
    }

    /// moto_server with short timeouts, so a frozen server fails fast.
    pub fn s3() -> TestLake {
        let moto = Moto::start();
        moto.create_bucket("lake");
        let lake = TestLake::s3_on(&moto.endpoint(), "s3://lake/site-a", &[]);
        TestLake {
            moto: Some(moto),
            ..lake
        }
    }

    /// The lake at `url` (`s3://bucket/prefix`) on an S3 endpoint started
    /// elsewhere (the bucket is not created), with `extra` options.
    #[allow(dead_code)]
    pub fn s3_on(endpoint: &str, url: &str, extra: &[(&str, &str)]) -> TestLake {
        let mut opts: Vec<(&str, &str)> = TUNING.to_vec();
        opts.extend([
            ("endpoint", endpoint),
            ("allow_http", "true"),
            ("region", "us-east-1"),
            ("connect_timeout", "1s"),
            ("request_timeout", "2s"),
            ("max_retries", "0"),
            ("retry_timeout", "2s"),
        ]);
        opts.extend(extra);
        let config = LakeConfig::parse_with_env(url, opts, test_env).unwrap();
        TestLake {
            lake: Lake::open(&config).unwrap(),
            url: url.to_owned(),
            moto: None,
            _dir: None,
        }
    }

    /// The object under `key`, read back through the store.
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        let (store, path) = self.lake.raw(key).unwrap();
        match store
            .get_opts(&path, object_store::GetOptions::default())
            .await
        {
            Ok(got) => Some(got.bytes().await.unwrap().to_vec()),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => panic!("get {key}: {e}"),
        }
    }
}

/// A policy over every file older than 7 days.
pub fn policy(name: &str, url: &str, action: &str, extra: &str) -> Policy {
    let yaml = format!(
        "name: {name}\nlake: {{url: \"{url}\"}}\nrules:\n  - name: old\n    include: [\"**\"]\n    modifiedBefore: 7d\n    action: {action}\n{extra}"
    );
    parse_policy(&yaml).unwrap_or_else(|e| panic!("{yaml}\n{e}"))
}

/// A volume directory with files of known content and mtime.
pub struct TestVolume {
    _dir: tempfile::TempDir,
    pub volume: Volume,
    /// Path → (content, mtime).
    pub files: BTreeMap<String, (Vec<u8>, SystemTime)>,
}

impl TestVolume {
    pub fn new(id: &str) -> TestVolume {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vol");
        std::fs::create_dir(&path).unwrap();
        TestVolume {
            volume: Volume {
                id: id.to_owned(),
                path: path.display().to_string(),
                labels: BTreeMap::new(),
            },
            _dir: dir,
            files: BTreeMap::new(),
        }
    }

    pub fn root(&self) -> PathBuf {
        PathBuf::from(&self.volume.path)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root().join(rel)
    }

    /// Writes `len` bytes last modified `age` ago.
    pub fn add(&mut self, rel: &str, len: usize, age: Duration) {
        let data = bytes(len, self.files.len() as u64 + 1 + len as u64);
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &data).unwrap();
        let mtime = SystemTime::now() - age;
        set_mtime(&p, mtime);
        let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
        self.files.insert(rel.to_owned(), (data, mtime));
    }

    /// Whether the file is local with its original content.
    pub fn intact(&self, rel: &str) -> bool {
        std::fs::read(self.path(rel)).is_ok_and(|d| d == self.files[rel].0)
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }
}

pub fn set_mtime(p: &Path, t: SystemTime) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(t))
        .unwrap();
}

/// A [`MemoryCatalog`] that also keeps every accepted command, in order.
#[derive(Clone, Default)]
pub struct RecordingCatalog {
    pub inner: MemoryCatalog,
    pub log: Arc<Mutex<Vec<Command>>>,
}

impl RecordingCatalog {
    pub fn commands(&self) -> Vec<Command> {
        self.log.lock().unwrap().clone()
    }

    pub async fn state<T: Send + 'static>(
        &self,
        f: impl FnOnce(&State) -> T + Send + 'static,
    ) -> T {
        self.inner.read(f).await.unwrap()
    }
}

impl CatalogClient for RecordingCatalog {
    async fn propose(&self, entry: LogEntry) -> Result<Result<Applied, Rejected>, CatalogError> {
        let cmd = entry.command.clone();
        let r = self.inner.propose(entry).await;
        if let Ok(Ok(_)) = &r {
            self.log.lock().unwrap().push(cmd);
        }
        r
    }

    async fn read<T, F>(&self, read: F) -> Result<T, CatalogError>
    where
        T: Send + 'static,
        F: FnOnce(&State) -> T + Send + 'static,
    {
        self.inner.read(read).await
    }
}
