//! One lake suite, run against every lake backend: a local directory and a real
//! S3 endpoint (moto_server, started per test and stopped by PID).

#[path = "common/data.rs"]
mod data;
#[path = "common/moto.rs"]
mod moto;

use data::bytes;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::Md5;
use object_store::{Attribute, Attributes, PutMode, PutOptions, PutPayload};
use sha2::{Digest, Sha256};
use strata_tiering::lake::{
    Lake, LakeBackend, LakeConfig, LakeError, MIN_LISTED, SHA256_METADATA_KEY, SentObject,
    UploadOutcome, VerifiedBy, VersionCheck, hex,
};

const MIB: usize = 1024 * 1024;

/// A lake plus a scratch directory for local files; keeps moto alive.
struct Backend {
    lake: Lake,
    work: tempfile::TempDir,
    _lake_dir: Option<tempfile::TempDir>,
    _moto: Option<moto::Moto>,
}

fn test_env(k: &str) -> Option<String> {
    match k {
        "AWS_ACCESS_KEY_ID" => Some("testing".into()),
        "AWS_SECRET_ACCESS_KEY" => Some("testing-secret".into()),
        _ => None,
    }
}

const TUNING: [(&str, &str); 2] = [("multipart_threshold", "8MiB"), ("part_size", "5MiB")];

impl Backend {
    fn local() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}/lake", dir.path().display());
        let config = LakeConfig::parse_with_env(&url, TUNING, test_env).unwrap();
        Backend {
            lake: Lake::open(&config).unwrap(),
            work: tempfile::tempdir().unwrap(),
            _lake_dir: Some(dir),
            _moto: None,
        }
    }

    fn s3() -> Backend {
        Self::s3_with(&[])
    }

    fn s3_with(extra: &[(&str, &str)]) -> Backend {
        let moto = moto::Moto::start();
        moto.create_bucket("lake");
        let endpoint = moto.endpoint();
        let mut opts: Vec<(&str, &str)> = TUNING.to_vec();
        opts.extend([
            ("endpoint", endpoint.as_str()),
            ("allow_http", "true"),
            ("region", "us-east-1"),
            ("connect_timeout", "2s"),
            ("max_retries", "2"),
            ("retry_timeout", "10s"),
        ]);
        opts.extend_from_slice(extra);
        let config = LakeConfig::parse_with_env("s3://lake/site-a", opts, test_env).unwrap();
        Backend {
            lake: Lake::open(&config).unwrap(),
            work: tempfile::tempdir().unwrap(),
            _lake_dir: None,
            _moto: Some(moto),
        }
    }

    /// Writes `len` deterministic bytes to a local file; returns path and SHA-256.
    fn file(&self, name: &str, len: usize, seed: u64) -> (PathBuf, [u8; 32]) {
        let data = bytes(len, seed);
        let path = self.work.path().join(name);
        std::fs::write(&path, &data).unwrap();
        (path, Sha256::digest(&data).into())
    }

    /// Replaces the object out of band with same-size different bytes, keeping
    /// the stored hash (where there is one) so only the content gives it away.
    async fn tamper(&self, key: &str, len: usize, claimed_sha: &[u8; 32]) {
        let (store, path) = self.lake.raw(key).unwrap();
        let mut attributes = Attributes::new();
        if self._moto.is_some() {
            attributes.insert(
                Attribute::Metadata(SHA256_METADATA_KEY.into()),
                hex(claimed_sha).into(),
            );
        }
        let opts = PutOptions {
            attributes,
            ..Default::default()
        };
        store
            .put_opts(&path, PutPayload::from(bytes(len, 999)), opts)
            .await
            .unwrap();
    }
}

fn sha_of_file(p: &Path) -> [u8; 32] {
    Sha256::digest(std::fs::read(p).unwrap()).into()
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

async fn round_trip(b: &Backend, len: usize, multipart: bool) {
    let (src, sha) = b.file("src", len, len as u64);
    let key = format!("vol-1/dir/file.{}", hex(&sha));
    let out = b.lake.upload(&src, &key, sha, len as u64).await.unwrap();
    let UploadOutcome::Uploaded {
        multipart: m,
        sent_md5,
    } = out
    else {
        panic!("want Uploaded, got {out:?}")
    };
    assert_eq!(m, multipart);
    // A single request upload reports the MD5 of what it sent.
    let md5: Option<[u8; 16]> = (!multipart).then(|| Md5::digest(bytes(len, len as u64)).into());
    assert_eq!(sent_md5, md5);
    // Verified by the lake's own digest where it has one, and by reading back.
    b.lake
        .verify(&key, len as u64, sha, sent_md5)
        .await
        .unwrap();
    b.lake.verify(&key, len as u64, sha, None).await.unwrap();
    let dest = b.work.path().join("back");
    b.lake.download(&key, &dest, len as u64, sha).await.unwrap();
    assert_eq!(sha_of_file(&dest), sha, "downloaded content differs");
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), len as u64);
    // The hash rides in the object's metadata where the backend keeps any.
    let (store, path) = b.lake.raw(&key).unwrap();
    let got = store
        .get_opts(&path, object_store::GetOptions::new().with_head(true))
        .await
        .unwrap();
    assert_eq!(got.meta.size, len as u64);
    if b._moto.is_some() {
        let stored = got
            .attributes
            .get(&Attribute::Metadata(SHA256_METADATA_KEY.into()))
            .expect("sha256 metadata on the S3 object");
        assert_eq!(stored.as_ref(), hex(&sha));
    }
}

async fn small_upload_round_trips(b: Backend) {
    round_trip(&b, 100 * 1024 + 7, false).await;
}

async fn multipart_upload_round_trips(b: Backend) {
    // 12 MiB with 5 MiB parts: 5 + 5 + 2.
    round_trip(&b, 12 * MIB, true).await;
}

async fn empty_file_round_trips(b: Backend) {
    round_trip(&b, 0, false).await;
}

async fn reupload_is_idempotent(b: Backend) {
    for (len, multipart) in [(4096, false), (9 * MIB, true)] {
        let (src, sha) = b.file("src", len, 7);
        let key = format!("vol/k-{len}");
        let first = b.lake.upload(&src, &key, sha, len as u64).await.unwrap();
        assert!(
            matches!(first, UploadOutcome::Uploaded { multipart: m, .. } if m == multipart),
            "{first:?}"
        );
        let again = b.lake.upload(&src, &key, sha, len as u64).await.unwrap();
        assert_eq!(again, UploadOutcome::AlreadyPresent);
        b.lake.verify(&key, len as u64, sha, None).await.unwrap();
    }
}

async fn different_content_under_same_key_conflicts(b: Backend) {
    for (len, what) in [(4096, "single"), (9 * MIB, "multipart")] {
        let key = format!("vol/conflict-{what}");
        let (a, sha_a) = b.file("a", len, 1);
        let (c, sha_c) = b.file("c", len, 2);
        b.lake.upload(&a, &key, sha_a, len as u64).await.unwrap();
        let err = b
            .lake
            .upload(&c, &key, sha_c, len as u64)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LakeError::Conflict { .. }),
            "{what}: want Conflict, got {err}"
        );
        assert!(!err.is_transient());
        assert!(err.to_string().contains(&key), "{err}");
        // Nothing was overwritten.
        b.lake.verify(&key, len as u64, sha_a, None).await.unwrap();
        // A different size under the key conflicts too.
        let (d, sha_d) = b.file("d", 10, 3);
        let err = b.lake.upload(&d, &key, sha_d, 10).await.unwrap_err();
        assert!(matches!(err, LakeError::Conflict { .. }), "{err}");
    }
}

/// Nothing is under `key`: verifying it finds no object.
async fn assert_not_stored(b: &Backend, key: &str, len: usize, sha: [u8; 32]) {
    let err = b.lake.verify(key, len as u64, sha, None).await.unwrap_err();
    assert!(matches!(err, LakeError::NotFound { .. }), "{key}: {err}");
}

async fn changed_source_is_refused_and_leaves_nothing(b: Backend) {
    for len in [4096, 9 * MIB] {
        let key = format!("vol/changed-{len}");
        let (src, mut sha) = b.file("src", len, 4);
        sha[0] ^= 1;
        let err = b
            .lake
            .upload(&src, &key, sha, len as u64)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LakeError::SourceChanged { .. }),
            "want SourceChanged, got {err}"
        );
        let err = b
            .lake
            .upload(&src, &key, sha, len as u64 + 1)
            .await
            .unwrap_err();
        assert!(matches!(err, LakeError::SourceChanged { .. }), "{err}");
        // The aborted upload left no object behind.
        assert_not_stored(&b, &key, len, sha).await;
    }
}

/// `upload_checked` sends a file only if the check accepts the fstat of
/// what it opened; a symlink or a directory at the path is a changed source.
/// Nothing reaches the lake in either case.
async fn version_check_and_symlinks_refuse_the_upload(b: Backend) {
    for len in [4096, 9 * MIB] {
        let key = format!("vol/checked-{len}");
        let (src, sha) = b.file("checked", len, 6);
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&src).unwrap());
        let refuse: VersionCheck = Arc::new(move |m| {
            use std::os::unix::fs::MetadataExt;
            Err(format!("ino is {}, recorded {}", m.ino(), m.ino() + 1))
        });
        let err = b
            .lake
            .upload_checked(&src, &key, sha, len as u64, Some(refuse))
            .await
            .unwrap_err();
        assert!(matches!(err, LakeError::SourceChanged { .. }), "{err}");
        let shown = err.to_string();
        assert!(shown.contains(&format!("ino is {ino}")), "{shown}");
        assert_not_stored(&b, &key, len, sha).await;

        let link = b.work.path().join(format!("link-{len}"));
        std::os::unix::fs::symlink(&src, &link).unwrap();
        let err = b
            .lake
            .upload(&link, &key, sha, len as u64)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LakeError::SourceChanged { reason, .. } if reason.contains("symlink")),
            "{err}"
        );
        let dir = b.work.path().join(format!("dir-{len}"));
        std::fs::create_dir(&dir).unwrap();
        let err = b
            .lake
            .upload(&dir, &key, sha, len as u64)
            .await
            .unwrap_err();
        assert!(matches!(err, LakeError::SourceChanged { .. }), "{err}");
        assert_not_stored(&b, &key, len, sha).await;

        // A check that accepts lets the same file through.
        let accept: VersionCheck = Arc::new(move |m| {
            use std::os::unix::fs::MetadataExt;
            if m.ino() == ino {
                Ok(())
            } else {
                Err("another inode".into())
            }
        });
        b.lake
            .upload_checked(&src, &key, sha, len as u64, Some(accept))
            .await
            .unwrap();
        b.lake.verify(&key, len as u64, sha, None).await.unwrap();
    }
}

async fn verify_detects_tampering(b: Backend) {
    let len = 64 * 1024;
    let (src, sha) = b.file("src", len, 5);
    let key = "vol/tampered";
    b.lake.upload(&src, key, sha, len as u64).await.unwrap();
    b.lake.verify(key, len as u64, sha, None).await.unwrap();
    // Wrong expectations are named.
    let err = b
        .lake
        .verify(key, len as u64 + 1, sha, None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LakeError::Mismatch { what: "size", .. }),
        "{err}"
    );
    let mut other = sha;
    other[31] ^= 0xff;
    let err = b
        .lake
        .verify(key, len as u64, other, None)
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::Mismatch { .. }), "{err}");
    // Same size, same claimed hash, different bytes: only reading back sees it.
    b.tamper(key, len, &sha).await;
    let err = b.lake.verify(key, len as u64, sha, None).await.unwrap_err();
    match &err {
        LakeError::Mismatch {
            key: k,
            what,
            expected,
            found,
        } => {
            assert_eq!(k, key);
            assert_eq!(*what, "content sha256");
            assert_eq!(expected, &hex(&sha));
            assert_ne!(found, expected);
        }
        other => panic!("want Mismatch, got {other}"),
    }
    assert!(!err.is_transient());
    let shown = err.to_string();
    assert!(shown.contains(key) && shown.contains(&hex(&sha)), "{shown}");
}

async fn download_refuses_corrupt_object(b: Backend) {
    let len = 64 * 1024;
    let (src, sha) = b.file("src", len, 6);
    let key = "vol/corrupt";
    b.lake.upload(&src, key, sha, len as u64).await.unwrap();
    b.tamper(key, len, &sha).await;
    let out = b.work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let dest = out.join("restored");
    let err = b
        .lake
        .download(key, &dest, len as u64, sha)
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::Mismatch { .. }), "{err}");
    assert!(
        dir_entries(&out).is_empty(),
        "left behind: {:?}",
        dir_entries(&out)
    );
    // An existing file at dest is left as it was.
    std::fs::write(&dest, b"old").unwrap();
    let err = b
        .lake
        .download(key, &dest, len as u64, sha)
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::Mismatch { .. }), "{err}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    assert_eq!(dir_entries(&out), vec!["restored".to_string()]);
    // Wrong size is refused before anything is written.
    let err = b
        .lake
        .download(key, &out.join("x"), 1, sha)
        .await
        .unwrap_err();
    assert!(
        matches!(err, LakeError::Mismatch { what: "size", .. }),
        "{err}"
    );
    assert_eq!(dir_entries(&out), vec!["restored".to_string()]);
}

async fn missing_and_deleted_keys(b: Backend) {
    let err = b
        .lake
        .verify("vol/none", 1, [0; 32], None)
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::NotFound { .. }), "{err}");
    assert!(!err.is_transient());
    let dest = b.work.path().join("none");
    let err = b
        .lake
        .download("vol/none", &dest, 1, [0; 32])
        .await
        .unwrap_err();
    assert!(matches!(err, LakeError::NotFound { .. }), "{err}");
    assert!(!dest.exists());
    let (src, sha) = b.file("src", 100, 8);
    b.lake.upload(&src, "vol/gone", sha, 100).await.unwrap();
    b.lake.delete("vol/gone").await.unwrap();
    b.lake.delete("vol/gone").await.unwrap();
    let err = b.lake.verify("vol/gone", 100, sha, None).await.unwrap_err();
    assert!(matches!(err, LakeError::NotFound { .. }), "{err}");
    // After a delete the key can be written again.
    let out = b.lake.upload(&src, "vol/gone", sha, 100).await.unwrap();
    assert!(
        matches!(
            out,
            UploadOutcome::Uploaded {
                multipart: false,
                sent_md5: Some(_)
            }
        ),
        "{out:?}"
    );
}

/// What the race path of `upload` relies on: the backend refuses a second
/// conditional create, and `upload` then judges what is stored.
async fn backend_honours_conditional_create(b: Backend) {
    let (src, sha) = b.file("src", 100, 9);
    let key = "vol/race";
    let (store, path) = b.lake.raw(key).unwrap();
    let create = || PutOptions::from(PutMode::Create);
    store
        .put_opts(&path, PutPayload::from(bytes(100, 9)), create())
        .await
        .unwrap();
    let err = store
        .put_opts(&path, PutPayload::from(bytes(100, 10)), create())
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::AlreadyExists { .. }),
        "{err}"
    );
    // No metadata was stored, so `upload` reads the object back to judge it.
    let out = b.lake.upload(&src, key, sha, 100).await.unwrap();
    assert_eq!(out, UploadOutcome::AlreadyPresent);
    b.lake.verify(key, 100, sha, None).await.unwrap();
}

async fn lake_is_reachable(b: Backend) {
    b.lake.reachable().await.unwrap();
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod lake_local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::local()).await;
                }
            )*
        }
        mod lake_s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(super::Backend::s3()).await;
                }
            )*
        }
    };
}

conformance!(
    small_upload_round_trips,
    multipart_upload_round_trips,
    empty_file_round_trips,
    reupload_is_idempotent,
    different_content_under_same_key_conflicts,
    changed_source_is_refused_and_leaves_nothing,
    version_check_and_symlinks_refuse_the_upload,
    verify_detects_tampering,
    download_refuses_corrupt_object,
    missing_and_deleted_keys,
    backend_honours_conditional_create,
    lake_is_reachable,
);

fn sent_md5(out: UploadOutcome) -> [u8; 16] {
    match out {
        UploadOutcome::Uploaded {
            sent_md5: Some(md5),
            ..
        } => md5,
        other => panic!("want a single request upload, got {other:?}"),
    }
}

/// Verification by the server's digest (the ETag of a single request upload)
/// settles only when that digest is the MD5 of the bytes sent: an MD5 that
/// is not the ETag makes the content decide; a wrong stored hash is caught
/// from the HEAD; an object replaced behind strata's back with its stored
/// hash intact is caught by reading it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_s3_verify_by_etag_falls_back_to_the_content() {
    let b = Backend::s3();
    let len = 4096;
    let (src, sha) = b.file("src", len, 12);
    let key = "vol/by-etag";
    let md5 = sent_md5(b.lake.upload(&src, key, sha, len as u64).await.unwrap());
    let by = b.lake.verify(key, len as u64, sha, Some(md5)).await;
    assert_eq!(by.unwrap(), VerifiedBy::Head);
    let mut wrong = md5;
    wrong[0] ^= 1;
    let by = b.lake.verify(key, len as u64, sha, Some(wrong)).await;
    assert_eq!(by.unwrap(), VerifiedBy::ReadBack);
    let err = b
        .lake
        .verify(key, len as u64 + 1, sha, Some(md5))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LakeError::Mismatch { what: "size", .. }),
        "{err}"
    );
    // The stored hash is checked from the HEAD, whatever the ETag says.
    let mut other = sha;
    other[0] ^= 0x80;
    for (claimed, what) in [(other, "stored sha256"), (sha, "content sha256")] {
        b.tamper(key, len, &claimed).await;
        let err = b
            .lake
            .verify(key, len as u64, sha, Some(md5))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, LakeError::Mismatch { what: w, .. } if *w == what),
            "{what}: {err}"
        );
    }
}

/// Fresh uploads are confirmed by listing their directory: every object
/// the listing shows with the size and MD5 sent, and nothing else — not an
/// object sent with other bytes or another size, not a key never written,
/// not the few of a directory too small to list. Older objects between
/// them and a subdirectory are passed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lake_s3_confirms_fresh_uploads_by_listing() {
    let b = Backend::s3();
    assert!(b.lake.lists());
    let mut sent = Vec::new();
    let upload = async |key: String, seed: u64| {
        let (src, sha) = b.file("src", 2048 + seed as usize, seed);
        let out = b.lake.upload(&src, &key, sha, 2048 + seed).await.unwrap();
        SentObject {
            key,
            size: 2048 + seed,
            md5: sent_md5(out),
        }
    };
    for i in 0..12u64 {
        sent.push(upload(format!("vol/dir-a/f{i:02}"), i).await);
        // Objects nobody asks about, between the ones sought.
        upload(format!("vol/dir-a/f{i:02}-old"), 100 + i).await;
    }
    upload("vol/dir-a/f05/sub/deep".into(), 200).await;
    for i in 0..MIN_LISTED as u64 - 1 {
        sent.push(upload(format!("vol/dir-b/g{i}"), 300 + i).await);
    }
    // Claims the lake must not confirm.
    let mut wrong_md5 = sent[3].clone();
    wrong_md5.md5[0] ^= 1;
    let mut wrong_size = sent[4].clone();
    wrong_size.size += 1;
    let never = SentObject {
        key: "vol/dir-a/f99".into(),
        size: 2048,
        md5: [7; 16],
    };
    sent.extend([wrong_md5, wrong_size, never]);

    let confirmed = b.lake.confirm_uploads(&sent).await;
    let want: Vec<bool> = sent
        .iter()
        .enumerate()
        .map(|(i, s)| i < 12 && s.key.starts_with("vol/dir-a/"))
        .collect();
    assert_eq!(confirmed, want);

    // A lake that reads everything back does not list.
    let paranoid = Backend::s3_with(&[("verify_read_back", "true")]);
    assert!(!paranoid.lake.lists());
    assert_eq!(
        paranoid.lake.confirm_uploads(&sent[..12]).await,
        vec![false; 12]
    );
}

#[tokio::test]
async fn lake_local_does_not_list() {
    let b = Backend::local();
    let (src, sha) = b.file("src", 100, 1);
    b.lake.upload(&src, "vol/x", sha, 100).await.unwrap();
    assert!(!b.lake.lists());
    let sent = vec![
        SentObject {
            key: "vol/x".into(),
            size: 100,
            md5: Md5::digest(bytes(100, 1)).into(),
        };
        MIN_LISTED
    ];
    assert_eq!(b.lake.confirm_uploads(&sent).await, vec![false; MIN_LISTED]);
}

/// A lake nobody answers for: a transient error, quickly.
#[tokio::test]
async fn lake_unreachable_is_transient_and_quick() {
    let port = moto::free_port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let config = LakeConfig::parse_with_env(
        "s3://lake/p",
        [
            ("endpoint", endpoint.as_str()),
            ("allow_http", "true"),
            ("connect_timeout", "200ms"),
            ("request_timeout", "1s"),
            ("max_retries", "1"),
            ("retry_timeout", "1s"),
        ],
        test_env,
    )
    .unwrap();
    let lake = Lake::open(&config).unwrap();
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("f");
    std::fs::write(&src, b"hello").unwrap();
    let sha: [u8; 32] = Sha256::digest(b"hello").into();

    let t = Instant::now();
    let err = lake.reachable().await.unwrap_err();
    assert!(err.is_transient(), "reachable: {err}");
    let err = lake.upload(&src, "v/f", sha, 5).await.unwrap_err();
    assert!(err.is_transient(), "upload: {err}");
    let err = lake.verify("v/f", 5, sha, None).await.unwrap_err();
    assert!(err.is_transient(), "verify: {err}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t.elapsed()
    );
    for shown in [format!("{err:?}"), err.to_string(), format!("{lake:?}")] {
        assert!(!shown.contains("testing-secret"), "secret leaked: {shown}");
    }
}

/// A local lake whose directory cannot be created fails at open, naming the path.
#[test]
fn lake_local_unusable_root_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let url = format!("file://{}/lake", blocker.display());
    let config = LakeConfig::parse(&url, Vec::<(String, String)>::new()).unwrap();
    let err = Lake::open(&config).unwrap_err();
    assert!(
        err.to_string().contains(&blocker.display().to_string()),
        "{err}"
    );
}

#[test]
fn lake_bad_urls_name_the_field() {
    let none = Vec::<(String, String)>::new;
    let err = LakeConfig::parse_with_env("ftp://host/dir", none(), test_env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "lake.url: scheme \"ftp\" is not supported (s3, file)"
    );
    let err =
        LakeConfig::parse_with_env("s3://lake/p", [("part_size", "1MiB")], test_env).unwrap_err();
    assert_eq!(err.field, "lake.part_size");
    let err = LakeConfig::parse_with_env("s3://lake/p", [("endpoint", "http://h:1")], test_env)
        .unwrap_err();
    assert_eq!(err.field, "lake.endpoint");
    // The error converts into a LakeError that is not worth retrying.
    let err: LakeError = err.into();
    assert!(!err.is_transient());
    let config = LakeConfig::parse_with_env("file:///srv/lake", none(), test_env).unwrap();
    assert!(matches!(config.backend, LakeBackend::Local(_)));
}
