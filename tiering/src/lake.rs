//! The data lake: one code path over `object_store` for S3 and a local
//! directory. Uploads are content-addressed by the caller (volume + path +
//! content hash in the key), checked against the SHA-256 the caller hashed,
//! created conditionally so a retry never overwrites a different version, and
//! verified by size and checksum before anyone frees a local byte.
//!
//! Requests per small file (one request upload): a PUT carrying the SHA-256 as
//! the S3 checksum (the server refuses a body that does not match it) and
//! `If-None-Match: *`; then the size and the ETag read back — for a
//! single-request upload the MD5 the server computed over the bytes it
//! stored, compared with the MD5 of the bytes sent — from a listing shared by
//! many fresh uploads of a directory ([`Lake::confirm_uploads`]), or else from
//! one HEAD, which also reads the stored SHA-256 ([`Lake::verify`]). Where the
//! lake cannot confirm a digest that way (multipart ETags, encrypted buckets,
//! a local directory, a verification in a later attempt) the whole object is
//! read back and hashed instead.

mod config;
mod error;
mod listing;
pub(crate) mod source;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use object_store::list::PaginatedListStore;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, GetOptions, GetResult, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, WriteMultipart,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub use config::{
    CredentialSource, DEFAULT_MULTIPART_THRESHOLD, DEFAULT_PART_SIZE, LakeBackend, LakeConfig,
    LakeConfigError, LakeTuning, LocalLake, MIN_PART_SIZE, S3Credentials, S3Lake, Secret,
    check_s3_options, check_url,
};
pub use error::LakeError;
pub use listing::{MIN_LISTED, SentObject};
pub use source::{Opener, VersionCheck};

/// Name of the object metadata entry (S3 `x-amz-meta-strata-sha256`) holding
/// the hex SHA-256 of the content.
pub const SHA256_METADATA_KEY: &str = "strata-sha256";

/// Directories [`Lake::confirm_uploads`] lists at once.
const LISTINGS_AT_ONCE: usize = 4;

/// Read buffer for hashing and streaming local files.
const READ_CHUNK: usize = 1024 * 1024;

/// What [`Lake::upload`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UploadOutcome {
    /// The object was written.
    Uploaded {
        /// Whether it went up as a multipart upload.
        multipart: bool,
        /// MD5 of the bytes sent by a single-request upload: hand it to
        /// [`Lake::verify`], which then needs only the object's size, stored
        /// hash and ETag from the lake, not its content.
        sent_md5: Option<[u8; 16]>,
    },
    /// The same content (size and SHA-256) was already under the key: nothing written.
    AlreadyPresent,
}

/// What settled that an object in the lake is the one sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifiedBy {
    /// A listing showed it with its size and an ETag equal to the MD5 of
    /// the bytes sent ([`Lake::confirm_uploads`]).
    Listing,
    /// A HEAD: its size, its stored SHA-256, and an ETag equal to the MD5 of
    /// the bytes sent.
    Head,
    /// Its content, read back and hashed.
    ReadBack,
}

impl VerifiedBy {
    /// The metric label: `listing`, `head` or `read_back`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Listing => "listing",
            Self::Head => "head",
            Self::ReadBack => "read_back",
        }
    }
}

/// Paces the bytes [`Lake::upload`] sends: a bandwidth limit, shared by
/// every upload that holds it ([`Lake::with_throttle`]).
pub trait Throttle: Send + Sync + 'static {
    /// Waits until `bytes` more may be sent. Called before each piece of an
    /// upload goes out: the whole file of a single-request upload, each read
    /// chunk (1 MiB) of a multipart one.
    fn acquire(&self, bytes: u64) -> futures::future::BoxFuture<'_, ()>;
}

/// A connection to the data lake.
#[derive(Clone)]
pub struct Lake {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// The S3 store's own listing, for [`Lake::confirm_uploads`]; none for a
    /// local directory, which also keeps no object metadata
    /// ([`Lake::has_metadata`]).
    lister: Option<Arc<dyn PaginatedListStore>>,
    tuning: LakeTuning,
    description: String,
    /// [`LakeConfig::location`]: what records name this lake by.
    location: String,
    throttle: Option<Arc<dyn Throttle>>,
}

impl Lake {
    /// Opens the lake described by `config`. Nothing is sent over the network;
    /// a local lake's root directory is created if missing.
    pub fn open(config: &LakeConfig) -> Result<Self, LakeError> {
        let tuning = config.tuning.clone();
        type Opened = (
            Arc<dyn ObjectStore>,
            ObjectPath,
            Option<Arc<dyn PaginatedListStore>>,
        );
        let (store, prefix, lister): Opened = match &config.backend {
            LakeBackend::Local(l) => {
                std::fs::create_dir_all(&l.root)
                    .map_err(|e| LakeError::io(&l.root, "create lake directory", e))?;
                let fs = object_store::local::LocalFileSystem::new_with_prefix(&l.root)
                    .map_err(|e| LakeError::store("open", &l.root.display().to_string(), e))?
                    .with_fsync(true)
                    .with_automatic_cleanup(true);
                (Arc::new(fs), ObjectPath::default(), None)
            }
            LakeBackend::S3(s) => {
                let store = build_s3(s, &tuning)
                    .map_err(|e| LakeError::store("open", &format!("s3://{}", s.bucket), e))?;
                let prefix = ObjectPath::parse(&s.prefix).map_err(|e| LakeConfigError {
                    field: "lake.url".into(),
                    reason: format!("prefix is not a valid object path: {e}"),
                })?;
                let store = Arc::new(store);
                (store.clone(), prefix, Some(store))
            }
        };
        Ok(Self {
            store,
            prefix,
            lister,
            tuning,
            description: config.to_string(),
            location: config.location(),
            throttle: None,
        })
    }

    /// The same lake with its uploads paced by `throttle` (downloads and
    /// verification reads are not paced).
    pub fn with_throttle(mut self, throttle: Arc<dyn Throttle>) -> Self {
        self.throttle = Some(throttle);
        self
    }

    async fn pace(&self, bytes: u64) {
        if let Some(t) = &self.throttle {
            t.acquire(bytes).await;
        }
    }

    /// The lake's URL without credentials, options or query
    /// ([`LakeConfig::location`]): what a file record names it by.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The tuning in effect.
    pub fn tuning(&self) -> &LakeTuning {
        &self.tuning
    }

    /// The underlying store and the full object path of `key`, bypassing every
    /// check of this type: for tests and garbage collection tools only.
    pub fn raw(&self, key: &str) -> Result<(Arc<dyn ObjectStore>, ObjectPath), LakeError> {
        Ok((self.store.clone(), self.object_path(key)?))
    }

    fn object_path(&self, key: &str) -> Result<ObjectPath, LakeError> {
        let invalid = |reason: String| LakeError::InvalidKey {
            key: key.to_string(),
            reason,
        };
        if key.is_empty() || key.starts_with('/') || key.ends_with('/') || key.contains("//") {
            return Err(invalid(
                "expected a relative key like volume/dir/file.sha256".into(),
            ));
        }
        let rel = ObjectPath::parse(key).map_err(|e| invalid(e.to_string()))?;
        Ok(self.prefix.parts().chain(rel.parts()).collect())
    }

    /// Uploads `local` under `key`. `expected_sha256` and `size` are what the
    /// caller hashed; the file is hashed again while it is read and the upload
    /// is refused (and any multipart upload aborted) if it changed since.
    ///
    /// If the key already holds the same size and SHA-256 the upload is skipped
    /// ([`UploadOutcome::AlreadyPresent`]); if it holds something else, the
    /// result is [`LakeError::Conflict`] and nothing is overwritten.
    ///
    /// A multipart upload is preceded by a HEAD (its completion cannot be made
    /// conditional, and a needless upload of a big file is costly). A single
    /// request upload relies on `If-None-Match: *` alone: on the rare server
    /// that ignores it (Garage 2.x) it replaces what is under the key, which,
    /// the key naming the content's hash, can only be the same bytes or garbage.
    pub async fn upload(
        &self,
        local: &Path,
        key: &str,
        expected_sha256: [u8; 32],
        size: u64,
    ) -> Result<UploadOutcome, LakeError> {
        self.upload_checked(local, key, expected_sha256, size, None)
            .await
    }

    /// [`Lake::upload`], sending the file only if `check` accepts the
    /// `fstat` of the descriptor its bytes are read from (otherwise
    /// [`LakeError::SourceChanged`] with the check's reason, before any byte
    /// goes out). A symlink or a non-regular file at `local` is a changed
    /// source too.
    pub async fn upload_checked(
        &self,
        local: &Path,
        key: &str,
        expected_sha256: [u8; 32],
        size: u64,
        check: Option<VersionCheck>,
    ) -> Result<UploadOutcome, LakeError> {
        let open = source::path_opener(local);
        self.upload_from(local, open, key, expected_sha256, size, check)
            .await
    }

    /// [`Lake::upload_checked`] of the file `open` opens (on a blocking
    /// thread); `local` only names it in errors.
    pub async fn upload_from(
        &self,
        local: &Path,
        open: Opener,
        key: &str,
        expected_sha256: [u8; 32],
        size: u64,
        check: Option<VersionCheck>,
    ) -> Result<UploadOutcome, LakeError> {
        let path = self.object_path(key)?;
        let multipart = size >= self.tuning.multipart_threshold;
        let written = if multipart {
            if let Some(outcome) = self.existing(key, &path, size, &expected_sha256).await? {
                tracing::debug!(key, "lake: already present");
                return Ok(outcome);
            }
            self.put_multipart(local, open, key, &path, &expected_sha256, size, check)
                .await?
                .then_some(None)
        } else {
            self.put_single(local, open, key, &path, &expected_sha256, size, check)
                .await?
                .map(Some)
        };
        if let Some(sent_md5) = written {
            tracing::debug!(key, size, multipart, lake = %self.description, "lake: uploaded");
            return Ok(UploadOutcome::Uploaded {
                multipart,
                sent_md5,
            });
        }
        // Lost a race with another writer of the same key: judge what won.
        match self.existing(key, &path, size, &expected_sha256).await? {
            Some(outcome) => Ok(outcome),
            None => Err(LakeError::Store {
                op: "put",
                key: key.to_string(),
                source: object_store::Error::Generic {
                    store: "lake",
                    source: "conditional create failed but the object is gone".into(),
                },
            }),
        }
    }

    fn attributes(&self, sha256: &[u8; 32]) -> Attributes {
        let mut attrs = Attributes::new();
        if self.has_metadata() {
            attrs.insert(
                Attribute::Metadata(SHA256_METADATA_KEY.into()),
                hex(sha256).into(),
            );
        }
        attrs
    }

    /// `Ok(None)` if nothing is under the key; `AlreadyPresent` if the same
    /// content is; `Conflict` otherwise.
    async fn existing(
        &self,
        key: &str,
        path: &ObjectPath,
        size: u64,
        sha256: &[u8; 32],
    ) -> Result<Option<UploadOutcome>, LakeError> {
        let (found_size, stored) = match self.head(key, path).await {
            Ok(found) => found,
            Err(LakeError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let found_sha = match stored {
            Some(s) => Some(s),
            None if found_size == size => Some(hex(&self.hash_object(key, path).await?.1)),
            None => None,
        };
        if found_size == size && found_sha.as_deref() == Some(hex(sha256).as_str()) {
            return Ok(Some(UploadOutcome::AlreadyPresent));
        }
        Err(LakeError::Conflict {
            key: key.to_string(),
            expected_size: size,
            expected_sha256: hex(sha256),
            found_size,
            found_sha256: found_sha.unwrap_or_else(|| "unknown".into()),
        })
    }

    /// Returns the MD5 of the bytes written, or `None` if the key already existed.
    /// The file is opened, checked, read and hashed in one blocking call.
    #[allow(clippy::too_many_arguments)]
    async fn put_single(
        &self,
        local: &Path,
        open: Opener,
        key: &str,
        path: &ObjectPath,
        sha256: &[u8; 32],
        size: u64,
        check: Option<VersionCheck>,
    ) -> Result<Option<[u8; 16]>, LakeError> {
        let (src, want) = (local.to_path_buf(), *sha256);
        let source::WholeFile { data, md5 } = tokio::task::spawn_blocking(move || {
            source::read_whole(&src, &open, size, &want, check.as_ref())
        })
        .await
        .map_err(|e| LakeError::io(local, "read", std::io::Error::other(e)))??;
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes: self.attributes(sha256),
            ..Default::default()
        };
        self.pace(data.len() as u64).await;
        match self
            .store
            .put_opts(path, PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(Some(md5)),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(None),
            Err(e) => Err(LakeError::store("put", key, e)),
        }
    }

    /// Multipart upload; aborted on any failure. object_store 0.14 offers no
    /// conditional completion of a multipart upload, so the existence check in
    /// [`Lake::upload`] guards it; with content-addressed keys a concurrent
    /// writer of the same key writes the same bytes.
    #[allow(clippy::too_many_arguments)]
    async fn put_multipart(
        &self,
        local: &Path,
        open: Opener,
        key: &str,
        path: &ObjectPath,
        sha256: &[u8; 32],
        size: u64,
        check: Option<VersionCheck>,
    ) -> Result<bool, LakeError> {
        let src = local.to_path_buf();
        let file =
            tokio::task::spawn_blocking(move || source::open_source(&src, &open, check.as_ref()))
                .await
                .map_err(|e| LakeError::io(local, "open", std::io::Error::other(e)))??;
        let mut file = tokio::fs::File::from_std(file);
        let opts = PutMultipartOptions {
            attributes: self.attributes(sha256),
            ..Default::default()
        };
        let upload = self
            .store
            .put_multipart_opts(path, opts)
            .await
            .map_err(|e| LakeError::store("multipart", key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.tuning.part_size);
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut buf = vec![0u8; READ_CHUNK];
        let failure = loop {
            let n = match file.read(&mut buf).await {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) => break Some(LakeError::io(local, "read", e)),
            };
            if let Err(e) = writer.wait_for_capacity(self.tuning.part_concurrency).await {
                break Some(LakeError::store("multipart", key, e));
            }
            hasher.update(&buf[..n]);
            total += n as u64;
            if total > size {
                break Some(source_changed(local, total, size, "grew"));
            }
            self.pace(n as u64).await;
            writer.write(&buf[..n]);
        };
        let failure = failure
            .or_else(|| check_source(local, total, &hasher.finalize().into(), size, sha256).err());
        if let Some(err) = failure {
            if let Err(e) = writer.abort().await {
                tracing::warn!(key, error = %e, "lake: aborting multipart upload failed");
            }
            return Err(err);
        }
        // finish() aborts the upload itself when a part or the completion fails.
        writer
            .finish()
            .await
            .map_err(|e| LakeError::store("multipart", key, e))?;
        Ok(true)
    }

    /// Size and stored SHA-256 (hex, if the backend keeps metadata) of `key`.
    async fn head(&self, key: &str, path: &ObjectPath) -> Result<(u64, Option<String>), LakeError> {
        let (size, stored, _) = self.head_with_etag(key, path).await?;
        Ok((size, stored))
    }

    /// Size, stored SHA-256 and ETag of `key`, from one HEAD.
    async fn head_with_etag(
        &self,
        key: &str,
        path: &ObjectPath,
    ) -> Result<(u64, Option<String>, Option<String>), LakeError> {
        let got = self
            .store
            .get_opts(path, GetOptions::new().with_head(true))
            .await
            .map_err(|e| LakeError::store("head", key, e))?;
        let stored = stored_sha256(&got.attributes);
        Ok((got.meta.size, stored, got.meta.e_tag))
    }

    /// Reads the whole object and returns its size and SHA-256.
    async fn hash_object(
        &self,
        key: &str,
        path: &ObjectPath,
    ) -> Result<(u64, [u8; 32]), LakeError> {
        let got = self
            .store
            .get_opts(path, GetOptions::default())
            .await
            .map_err(|e| LakeError::store("get", key, e))?;
        hash_body(key, got).await
    }

    /// Checks that `key` holds `size` bytes with SHA-256 `sha256`.
    ///
    /// With `sent_md5` (from [`UploadOutcome::Uploaded`]) and an S3 lake, one
    /// HEAD reads back the size, the stored SHA-256 and the ETag; an ETag equal
    /// to the MD5 of the bytes sent is the server's own digest of what it
    /// stored, and settles it. Otherwise — no MD5, an ETag that is not a plain
    /// MD5 (multipart, encrypted buckets), a local directory, or
    /// `verify_read_back` on — the content itself is read back and hashed.
    ///
    /// Reading back is one GET: its answer carries the size and the stored
    /// hash just as a HEAD's does, and both are checked before the body is
    /// read, so no HEAD precedes it.
    pub async fn verify(
        &self,
        key: &str,
        size: u64,
        sha256: [u8; 32],
        sent_md5: Option<[u8; 16]>,
    ) -> Result<VerifiedBy, LakeError> {
        let path = self.object_path(key)?;
        let want = hex(&sha256);
        if let Some(md5) = sent_md5.filter(|_| self.etag_settles()) {
            let (found_size, stored, etag) = self.head_with_etag(key, &path).await?;
            check_stored(key, size, &want, found_size, stored.as_deref())?;
            if stored.is_some() && etag.as_deref().is_some_and(|e| etag_is_md5(e, &md5)) {
                return Ok(VerifiedBy::Head);
            }
            // The lake cannot vouch for the content: only the content can tell.
        }
        let got = self
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| LakeError::store("get", key, e))?;
        let stored = stored_sha256(&got.attributes);
        check_stored(key, size, &want, got.meta.size, stored.as_deref())?;
        let (read_size, found) = hash_body(key, got).await?;
        if read_size != size {
            return Err(mismatch(key, "size", size, read_size));
        }
        if found != sha256 {
            return Err(mismatch(key, "content sha256", &want, hex(&found)));
        }
        Ok(VerifiedBy::ReadBack)
    }

    /// Checks again that `key`, verified earlier, still holds `size` bytes
    /// with SHA-256 `sha256` (lifecycle rules, a hand that emptied the
    /// bucket): one HEAD reading the size and the SHA-256 stored with the
    /// object where the lake keeps metadata (an S3 lake without
    /// `verify_read_back`), the content read back and hashed otherwise.
    /// A missing object is [`LakeError::NotFound`], another one
    /// [`LakeError::Mismatch`].
    pub async fn recheck(
        &self,
        key: &str,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<VerifiedBy, LakeError> {
        let path = self.object_path(key)?;
        if self.etag_settles() {
            let (found_size, stored) = self.head(key, &path).await?;
            check_stored(key, size, &hex(&sha256), found_size, stored.as_deref())?;
            if stored.is_some() {
                return Ok(VerifiedBy::Head);
            }
        }
        self.verify(key, size, sha256, None).await
    }

    /// Whether [`Lake::confirm_uploads`] lists at all (an S3 lake without
    /// `verify_read_back`).
    pub fn lists(&self) -> bool {
        self.etag_settles()
    }

    /// Whether the backend keeps object metadata (attributes); a local
    /// directory does not, so its hash can only be learned by reading back.
    fn has_metadata(&self) -> bool {
        self.lister.is_some()
    }

    /// Whether the ETag of a single-request upload, read back by a HEAD or a
    /// listing, settles its verification: an S3 lake without
    /// `verify_read_back` (otherwise the content is read back).
    fn etag_settles(&self) -> bool {
        self.has_metadata() && !self.tuning.verify_read_back
    }

    /// Confirms objects just written by one request each ([`SentObject`],
    /// from [`UploadOutcome::Uploaded::sent_md5`]) from listings of their
    /// directories instead of a HEAD each: `result[i]` is true if a listing
    /// showed `sent[i]` with its size and an ETag equal to its MD5.
    ///
    /// Only an S3 lake lists, and not with `verify_read_back` on; a directory
    /// with fewer than [`MIN_LISTED`] of the objects is not listed. A false
    /// is no verdict: a listing that failed, lags behind the writes or shows
    /// something else leaves the object to [`Lake::verify`], which judges it
    /// on its own.
    pub async fn confirm_uploads(&self, sent: &[SentObject]) -> Vec<bool> {
        let mut confirmed = vec![false; sent.len()];
        let Some(lister) = self.lister.as_ref().filter(|_| self.lists()) else {
            return confirmed;
        };
        let mut by_dir: BTreeMap<String, Vec<(String, usize)>> = BTreeMap::new();
        for (i, s) in sent.iter().enumerate() {
            let Ok(path) = self.object_path(&s.key) else {
                continue;
            };
            let path = path.as_ref().to_owned();
            let dir = listing::dir_of(&path).to_owned();
            by_dir.entry(dir).or_default().push((path, i));
        }
        let listings = by_dir
            .into_iter()
            .filter(|(_, sought)| sought.len() >= MIN_LISTED)
            .map(|(dir, mut sought)| async move {
                sought.sort_unstable();
                let found = listing::confirm_dir(lister, &dir, &sought, sent).await;
                (dir, found)
            });
        let mut listings = futures::stream::iter(listings).buffer_unordered(LISTINGS_AT_ONCE);
        while let Some((dir, found)) = listings.next().await {
            match found {
                Ok(found) => found.into_iter().for_each(|i| confirmed[i] = true),
                Err(e) => {
                    tracing::debug!(dir, error = %e, "lake: listing failed; the objects are verified one by one")
                }
            }
        }
        confirmed
    }

    /// Downloads `key` to `dest`: streamed into a temporary file beside `dest`,
    /// hashed while written, fsynced, compared with `size` and `sha256`, and only
    /// then renamed into place. On any failure no file is left behind and `dest`
    /// is untouched.
    pub async fn download(
        &self,
        key: &str,
        dest: &Path,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<(), LakeError> {
        let got = self.get_sized(key, size).await?;
        let tmp = TempFile::beside(dest)?;
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp.path)
            .await
            .map_err(|e| LakeError::io(&tmp.path, "create", e))?;
        self.stream_into(key, got, file, &tmp.path, size, sha256)
            .await?;
        tokio::fs::rename(&tmp.path, dest)
            .await
            .map_err(|e| LakeError::io(dest, "rename", e))?;
        tmp.disarm();
        let dir = parent_dir(dest).to_path_buf();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all())
            .await
            .map_err(|e| LakeError::io(dest, "fsync directory", std::io::Error::other(e)))?
            .map_err(|e| LakeError::io(dest, "fsync directory", e))?;
        Ok(())
    }

    /// Starts reading `key`, whose size must be `size` (else a mismatch,
    /// before a byte is written anywhere).
    async fn get_sized(&self, key: &str, size: u64) -> Result<GetResult, LakeError> {
        let path = self.object_path(key)?;
        let got = self
            .store
            .get_opts(&path, GetOptions::default())
            .await
            .map_err(|e| LakeError::store("get", key, e))?;
        if got.meta.size != size {
            return Err(mismatch(key, "size", size, got.meta.size));
        }
        Ok(got)
    }

    /// Downloads `key` into `file`, an empty file the caller created (the
    /// mover creates it beneath a volume's root descriptor): streamed,
    /// hashed while written, fsynced, and compared with `size` and `sha256`.
    /// `shown` names the file in errors. Returns the file for the caller to
    /// finish (owner, mode, times) and rename; on an error its content is
    /// garbage and the caller removes it.
    pub async fn download_into(
        &self,
        key: &str,
        file: std::fs::File,
        shown: &Path,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<std::fs::File, LakeError> {
        let got = self.get_sized(key, size).await?;
        let file = tokio::fs::File::from_std(file);
        self.stream_into(key, got, file, shown, size, sha256).await
    }

    /// Writes the body of `got` to `file`, fsyncs it, and checks its size
    /// and SHA-256.
    async fn stream_into(
        &self,
        key: &str,
        got: object_store::GetResult,
        mut file: tokio::fs::File,
        shown: &Path,
        size: u64,
        sha256: [u8; 32],
    ) -> Result<std::fs::File, LakeError> {
        let mut stream = got.into_stream();
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| LakeError::store("get", key, e))?;
            hasher.update(&chunk);
            total += chunk.len() as u64;
            if total > size {
                return Err(mismatch(key, "size", size, total));
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| LakeError::io(shown, "write", e))?;
        }
        file.sync_all()
            .await
            .map_err(|e| LakeError::io(shown, "fsync", e))?;
        if total != size {
            return Err(mismatch(key, "size", size, total));
        }
        let got: [u8; 32] = hasher.finalize().into();
        if got != sha256 {
            return Err(mismatch(key, "content sha256", hex(&sha256), hex(&got)));
        }
        Ok(file.into_std().await)
    }

    /// Deletes `key` (tests and garbage collection). Deleting a missing key succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), LakeError> {
        let path = self.object_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(LakeError::store("delete", key, e)),
        }
    }

    /// Whether the lake answers: one cheap listing of the prefix. The error says
    /// why not (see [`LakeError::is_transient`]).
    pub async fn reachable(&self) -> Result<(), LakeError> {
        let prefix = (!self.prefix.as_ref().is_empty()).then_some(&self.prefix);
        self.store
            .list_with_delimiter(prefix)
            .await
            .map(|_| ())
            .map_err(|source| LakeError::Store {
                op: "list",
                key: self.prefix.to_string(),
                source,
            })
    }
}

// By hand, so the store's configuration (and its credentials) never reaches a log.
impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("lake", &self.description)
            .field("location", &self.location)
            .field("prefix", &self.prefix.as_ref())
            .field("tuning", &self.tuning)
            .field("throttled", &self.throttle.is_some())
            .finish()
    }
}

impl std::fmt::Display for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

fn build_s3(
    s: &S3Lake,
    tuning: &LakeTuning,
) -> Result<object_store::aws::AmazonS3, object_store::Error> {
    let client = object_store::ClientOptions::new()
        .with_allow_http(s.allow_http)
        .with_connect_timeout(tuning.connect_timeout)
        .with_timeout(tuning.request_timeout);
    let retry = object_store::RetryConfig {
        backoff: object_store::BackoffConfig::default(),
        max_retries: tuning.max_retries,
        retry_timeout: tuning.retry_timeout,
    };
    let mut b = object_store::aws::AmazonS3Builder::new()
        .with_bucket_name(&s.bucket)
        .with_region(&s.region)
        .with_allow_http(s.allow_http)
        .with_virtual_hosted_style_request(s.virtual_hosted)
        .with_access_key_id(&s.credentials.access_key_id)
        .with_secret_access_key(s.credentials.secret_access_key.expose())
        .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
        .with_client_options(client)
        .with_retry(retry);
    if let Some(t) = &s.credentials.session_token {
        b = b.with_token(t.expose());
    }
    if let Some(e) = &s.endpoint {
        b = b.with_endpoint(e);
    }
    b.build()
}

/// The SHA-256 (lowercase hex) kept in an object's metadata, if any.
fn stored_sha256(attributes: &Attributes) -> Option<String> {
    attributes
        .get(&Attribute::Metadata(SHA256_METADATA_KEY.into()))
        .map(|v| v.as_ref().to_ascii_lowercase())
}

/// Streams an object's body through SHA-256: its size and hash.
async fn hash_body(key: &str, got: GetResult) -> Result<(u64, [u8; 32]), LakeError> {
    let mut stream = got.into_stream();
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| LakeError::store("get", key, e))?;
        hasher.update(&chunk);
        total += chunk.len() as u64;
    }
    Ok((total, hasher.finalize().into()))
}

/// What a HEAD or a GET says of the object: its size, and the hash kept with it.
fn check_stored(
    key: &str,
    size: u64,
    want: &str,
    found_size: u64,
    stored: Option<&str>,
) -> Result<(), LakeError> {
    if found_size != size {
        return Err(mismatch(key, "size", size, found_size));
    }
    match stored {
        Some(s) if s != want => Err(mismatch(key, "stored sha256", want, s)),
        _ => Ok(()),
    }
}

fn check_source(
    local: &Path,
    found_size: u64,
    found_sha: &[u8; 32],
    size: u64,
    sha256: &[u8; 32],
) -> Result<(), LakeError> {
    if found_size != size {
        return Err(source_changed(local, found_size, size, "size"));
    }
    if found_sha != sha256 {
        return Err(LakeError::SourceChanged {
            path: local.to_path_buf(),
            reason: format!("sha256 is {}, expected {}", hex(found_sha), hex(sha256)),
        });
    }
    Ok(())
}

fn source_changed(local: &Path, found: u64, expected: u64, what: &str) -> LakeError {
    LakeError::SourceChanged {
        path: local.to_path_buf(),
        reason: format!("{what}: {found} bytes, expected {expected}"),
    }
}

fn mismatch(
    key: &str,
    what: &'static str,
    expected: impl ToString,
    found: impl ToString,
) -> LakeError {
    LakeError::Mismatch {
        key: key.to_string(),
        what,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// Lowercase hex of a SHA-256.
pub fn hex(sha256: &[u8; 32]) -> String {
    hex_bytes(sha256)
}

fn hex_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Whether an ETag (quoted, as S3 sends it) is the plain MD5 `md5`. A
/// multipart ETag (`"<md5 of part md5s>-<parts>"`) or an encrypted object's
/// never is.
fn etag_is_md5(etag: &str, md5: &[u8; 16]) -> bool {
    etag.trim_matches('"').eq_ignore_ascii_case(&hex_bytes(md5))
}

fn parent_dir(p: &Path) -> &Path {
    match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A temporary download file, removed on drop unless disarmed (also when the
/// download future is cancelled).
struct TempFile {
    path: PathBuf,
    armed: bool,
}

impl TempFile {
    fn beside(dest: &Path) -> Result<Self, LakeError> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let name = dest.file_name().ok_or_else(|| {
            LakeError::io(
                dest,
                "download",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "destination has no file name",
                ),
            )
        })?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(
            ".strata-download.{}.{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        Ok(Self {
            path: parent_dir(dest).join(tmp_name),
            armed: true,
        })
    }

    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Md5;

    #[test]
    fn lake_etag_matches_only_a_plain_md5() {
        let md5: [u8; 16] = Md5::digest(b"hello").into();
        assert!(etag_is_md5("\"5d41402abc4b2a76b9719d911017c592\"", &md5));
        assert!(etag_is_md5("5D41402ABC4B2A76B9719D911017C592", &md5));
        assert!(!etag_is_md5("\"5d41402abc4b2a76b9719d911017c592-1\"", &md5));
        assert!(!etag_is_md5("\"00000000000000000000000000000000\"", &md5));
        assert!(!etag_is_md5("", &md5));
    }

    #[test]
    fn lake_hex_is_lowercase_64() {
        let h = hex(&Sha256::digest(b"abc").into());
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[tokio::test]
    async fn lake_secret_absent_from_debug_and_errors() {
        const SECRET: &str = "very-secret-lake-key-9f3a";
        let env = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIDTEST".to_string()),
            "AWS_SECRET_ACCESS_KEY" => Some(SECRET.to_string()),
            "AWS_SESSION_TOKEN" => Some(format!("{SECRET}-token")),
            _ => None,
        };
        // A loopback port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let config = LakeConfig::parse_with_env(
            "s3://lake/p",
            [
                ("endpoint", endpoint.as_str()),
                ("allow_http", "true"),
                ("connect_timeout", "100ms"),
                ("max_retries", "0"),
            ],
            env,
        )
        .unwrap();
        let lake = Lake::open(&config).unwrap();
        let err = lake.reachable().await.unwrap_err();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"x").unwrap();
        let up = lake.upload(&f, "k", [0; 32], 1).await.unwrap_err();
        for shown in [
            format!("{lake:?}"),
            format!("{lake:#?}"),
            lake.to_string(),
            format!("{config:?}"),
            config.to_string(),
            format!("{err:?}"),
            err.to_string(),
            format!("{up:?}"),
            up.to_string(),
        ] {
            assert!(!shown.contains(SECRET), "secret leaked: {shown}");
        }
    }

    #[test]
    fn lake_keys_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let lake =
            Lake::open(&LakeConfig::parse(&url, Vec::<(String, String)>::new()).unwrap()).unwrap();
        for bad in ["", "/abs", "a//b", "a/../b", "dir/"] {
            let err = lake.object_path(bad).unwrap_err();
            assert!(matches!(err, LakeError::InvalidKey { .. }), "{bad}: {err}");
            assert!(!err.is_transient());
        }
        assert_eq!(lake.object_path("v/a/b.c").unwrap().as_ref(), "v/a/b.c");
    }
}
