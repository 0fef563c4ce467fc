//! Where the lake is and how to talk to it: parsed from a URL plus string
//! options (the `lake:` block of a policy), validated before anything connects.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Smallest part S3 accepts for every part but the last.
pub const MIN_PART_SIZE: usize = 5 * 1024 * 1024;
/// Files of at least this many bytes go up as multipart uploads by default.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Default multipart part size.
pub const DEFAULT_PART_SIZE: usize = 8 * 1024 * 1024;

/// A malformed lake URL or option: names the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct LakeConfigError {
    /// The offending field, e.g. `lake.url` or `lake.part_size`.
    pub field: String,
    /// Why it was rejected.
    pub reason: String,
}

fn bad(field: &str, reason: impl Into<String>) -> LakeConfigError {
    LakeConfigError {
        field: format!("lake.{field}"),
        reason: reason.into(),
    }
}

/// A string that never shows itself in `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself: only for handing to the client that signs requests.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Access keys for an S3 lake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Credentials {
    /// Access key id (not secret, but kept out of logs anyway by the S3 client).
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: Secret,
    /// Optional session token.
    pub session_token: Option<Secret>,
}

/// Where S3 credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CredentialSource {
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`).
    Env,
    /// A file in the AWS shared-credentials format (`[default]` profile, or keys
    /// outside any profile).
    File(PathBuf),
}

/// An S3 (or S3-compatible) lake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Lake {
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (may be empty).
    pub prefix: String,
    /// Custom endpoint (`http://127.0.0.1:9000`); `None` means AWS.
    pub endpoint: Option<String>,
    /// Region, `us-east-1` unless told.
    pub region: String,
    /// Virtual-hosted-style requests (`bucket.host/key`) instead of path style.
    pub virtual_hosted: bool,
    /// Whether plain-HTTP endpoints are allowed.
    pub allow_http: bool,
    /// Where the credentials came from.
    pub credential_source: CredentialSource,
    /// The credentials, loaded at parse time.
    pub credentials: S3Credentials,
}

/// A lake in a local (or mounted) directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalLake {
    /// Absolute root directory of the lake.
    pub root: PathBuf,
}

/// Which backend holds the lake.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LakeBackend {
    /// `s3://bucket/prefix`
    S3(S3Lake),
    /// `file:///dir`
    Local(LocalLake),
}

/// Tuning that applies to every backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeTuning {
    /// Files at least this big go up as multipart uploads.
    pub multipart_threshold: u64,
    /// Part size of multipart uploads (≥ 5 MiB).
    pub part_size: usize,
    /// Parts in flight per multipart upload.
    pub part_concurrency: usize,
    /// Whether `verify` always reads the whole object back and hashes it.
    /// When false (the default), an object written by one request to an S3
    /// lake is verified by a listing shared with other fresh uploads
    /// (`Lake::confirm_uploads`: its size and ETag) or by one HEAD (its size,
    /// the SHA-256 kept in its metadata, and its ETag). The ETag must equal
    /// the MD5 of the bytes sent (the server's own digest of what it stored;
    /// the body was also checked by the server against the SHA-256 checksum
    /// sent with it). Everything else
    /// (multipart objects, ETags that are not an MD5, a local directory, an
    /// upload verified in a later attempt) is read back either way.
    pub verify_read_back: bool,
    /// TCP connect timeout (S3).
    pub connect_timeout: Duration,
    /// Whole-request timeout (S3).
    pub request_timeout: Duration,
    /// Retries of a failed request (S3).
    pub max_retries: usize,
    /// Give up retrying after this long (S3).
    pub retry_timeout: Duration,
}

impl Default for LakeTuning {
    fn default() -> Self {
        Self {
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            part_size: DEFAULT_PART_SIZE,
            part_concurrency: 4,
            verify_read_back: false,
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(300),
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
        }
    }
}

/// A validated lake configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeConfig {
    /// The backend and its location.
    pub backend: LakeBackend,
    /// Sizes, timeouts and verification.
    pub tuning: LakeTuning,
}

const S3_OPTIONS: &[&str] = &[
    "endpoint",
    "region",
    "path_style",
    "allow_http",
    "credentials",
];
const COMMON_OPTIONS: &[&str] = &[
    "multipart_threshold",
    "part_size",
    "part_concurrency",
    "verify_read_back",
    "connect_timeout",
    "request_timeout",
    "max_retries",
    "retry_timeout",
];

impl LakeConfig {
    /// Parses `s3://bucket/prefix` or `file:///dir` plus options (`endpoint`,
    /// `region`, `path_style`, `allow_http`, `credentials` = `env` | `file:<path>`,
    /// and `multipart_threshold`, `part_size`, `part_concurrency`,
    /// `verify_read_back`, `connect_timeout`, `request_timeout`, `max_retries`,
    /// `retry_timeout`). S3 credentials are read here, from the environment or
    /// the file.
    pub fn parse<K, V>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, LakeConfigError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        Self::parse_with_env(url, options, |k| std::env::var(k).ok())
    }

    /// Like [`LakeConfig::parse`] with the environment supplied by `env` (tests).
    pub fn parse_with_env<K, V>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, LakeConfigError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let mut opts: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in options {
            let k = k.into();
            if opts.insert(k.clone(), v.into()).is_some() {
                return Err(bad(&k, "given more than once"));
            }
        }
        let parsed = check_url(url)?;
        let scheme = parsed.scheme().to_string();
        let allowed: Vec<&str> = if scheme == "s3" {
            S3_OPTIONS.iter().chain(COMMON_OPTIONS).copied().collect()
        } else {
            COMMON_OPTIONS.to_vec()
        };
        for k in opts.keys() {
            if !allowed.contains(&k.as_str()) {
                let reason = if S3_OPTIONS.contains(&k.as_str()) {
                    format!("only applies to s3:// lakes, not {scheme}://")
                } else {
                    format!("unknown option (known: {})", allowed.join(", "))
                };
                return Err(bad(k, reason));
            }
        }
        let tuning = parse_tuning(&opts)?;
        let backend = if scheme == "s3" {
            LakeBackend::S3(parse_s3(&parsed, &opts, &env)?)
        } else {
            LakeBackend::Local(parse_local(&parsed)?)
        };
        Ok(Self { backend, tuning })
    }
}

/// Checks options meant for every `s3://` lake of a process (`strata node
/// --lake-option`) before any policy names a lake: known keys, each given
/// once, valid values. Credentials are refused here: each policy says where
/// its own come from.
pub fn check_s3_options<K, V>(
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<(), LakeConfigError>
where
    K: Into<String>,
    V: Into<String>,
{
    let options: Vec<(String, String)> = options
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    if options.iter().any(|(k, _)| k == "credentials") {
        return Err(bad(
            "credentials",
            "set by each policy (credentials: env or a file), not for every lake",
        ));
    }
    // Stand-in credentials: only the options are judged, nothing is opened.
    let stand_in = |k: &str| k.starts_with("AWS_").then(|| "stand-in".to_owned());
    LakeConfig::parse_with_env("s3://options-check", options, stand_in).map(|_| ())
}

/// Check a lake URL on its own (a policy names its lake by URL before any
/// options are known): a URL, of a scheme strata opens (s3, file), with no
/// credentials inside it. The one place both the policy and the lake check it.
pub fn check_url(url: &str) -> Result<url::Url, LakeConfigError> {
    let parsed = url::Url::parse(url).map_err(|e| bad("url", format!("not a URL: {e}")))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Never echo the URL here: it carries a secret.
        return Err(bad(
            "url",
            "credentials in the URL are not supported (use the credentials option)",
        ));
    }
    match parsed.scheme() {
        "s3" | "file" => Ok(parsed),
        other => Err(bad(
            "url",
            format!("scheme \"{other}\" is not supported (s3, file)"),
        )),
    }
}

impl LakeConfig {
    /// The lake's identity as a record keeps it: its URL without
    /// credentials, options or query, `s3://bucket/prefix` (`s3://bucket`
    /// without a prefix) or `file:///dir`. Built from the parsed parts, so
    /// nothing of the text the lake was given (a query, a user) survives.
    ///
    /// The endpoint and region are not part of it: the bucket and prefix
    /// name the data. A bucket of the same name behind another endpoint is
    /// taken for the same lake; an old archive is looked at again before a
    /// release ([`crate::mover::MoverOptions::reverify_after`]) in any case.
    pub fn location(&self) -> String {
        match &self.backend {
            LakeBackend::S3(s) if s.prefix.is_empty() => format!("s3://{}", s.bucket),
            LakeBackend::S3(s) => format!("s3://{}/{}", s.bucket, s.prefix),
            LakeBackend::Local(l) => url::Url::from_file_path(&l.root)
                .map_or_else(|()| format!("file://{}", l.root.display()), String::from),
        }
    }
}

impl fmt::Display for LakeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.backend {
            LakeBackend::S3(s) => {
                write!(f, "s3://{}/{}", s.bucket, s.prefix)?;
                if let Some(e) = &s.endpoint {
                    write!(f, " at {e}")?;
                }
                write!(f, " ({})", s.region)
            }
            LakeBackend::Local(l) => write!(f, "file://{}", l.root.display()),
        }
    }
}

fn parse_local(url: &url::Url) -> Result<LocalLake, LakeConfigError> {
    match url.host_str() {
        None | Some("") | Some("localhost") => {}
        Some(h) => {
            return Err(bad(
                "url",
                format!("file:// URL names host \"{h}\"; use file:///absolute/dir"),
            ));
        }
    }
    let root = url
        .to_file_path()
        .map_err(|()| bad("url", "file:// URL is not an absolute directory path"))?;
    if root.parent().is_none() {
        return Err(bad("url", "the lake cannot be the root directory"));
    }
    Ok(LocalLake { root })
}

fn parse_s3(
    url: &url::Url,
    opts: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<S3Lake, LakeConfigError> {
    let bucket = url
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| bad("url", "s3:// URL has no bucket (s3://bucket/prefix)"))?
        .to_string();
    if bucket.len() < 3
        || bucket.len() > 63
        || !bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    {
        return Err(bad(
            "url",
            format!("\"{bucket}\" is not a valid bucket name (3-63 of a-z, 0-9, '-', '.')"),
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad(
            "url",
            "s3:// URL takes no query or fragment; use options",
        ));
    }
    let prefix = url.path().trim_matches('/').to_string();
    let endpoint = match opts.get("endpoint") {
        None => None,
        Some(e) => {
            let u =
                url::Url::parse(e).map_err(|err| bad("endpoint", format!("not a URL: {err}")))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(bad(
                    "endpoint",
                    format!("scheme \"{}\" is not supported (http, https)", u.scheme()),
                ));
            }
            if !u.username().is_empty() || u.password().is_some() {
                return Err(bad("endpoint", "credentials in the URL are not supported"));
            }
            Some(e.trim_end_matches('/').to_string())
        }
    };
    let allow_http = opt_bool(opts, "allow_http")?.unwrap_or(false);
    if let Some(e) = &endpoint
        && e.starts_with("http://")
        && !allow_http
    {
        return Err(bad(
            "endpoint",
            "plain http:// endpoint needs allow_http: true",
        ));
    }
    let region = opts
        .get("region")
        .cloned()
        .unwrap_or_else(|| "us-east-1".to_string());
    if region.is_empty() {
        return Err(bad("region", "must not be empty"));
    }
    // Custom endpoints (MinIO, Garage, moto) usually want path style.
    let path_style = opt_bool(opts, "path_style")?.unwrap_or(endpoint.is_some());
    let (credential_source, credentials) = match opts.get("credentials").map(String::as_str) {
        None | Some("env") => (CredentialSource::Env, creds_from_env(env)?),
        Some(v) if v.starts_with("file:") => {
            let path = PathBuf::from(&v["file:".len()..]);
            let c = creds_from_file(&path)?;
            (CredentialSource::File(path), c)
        }
        Some(_) => {
            return Err(bad("credentials", "expected \"env\" or \"file:<path>\""));
        }
    };
    Ok(S3Lake {
        bucket,
        prefix,
        endpoint,
        region,
        virtual_hosted: !path_style,
        allow_http,
        credential_source,
        credentials,
    })
}

fn creds_from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<S3Credentials, LakeConfigError> {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    let access_key_id = get("AWS_ACCESS_KEY_ID")
        .ok_or_else(|| bad("credentials", "env: AWS_ACCESS_KEY_ID is not set"))?;
    let secret = get("AWS_SECRET_ACCESS_KEY")
        .ok_or_else(|| bad("credentials", "env: AWS_SECRET_ACCESS_KEY is not set"))?;
    Ok(S3Credentials {
        access_key_id,
        secret_access_key: Secret::new(secret),
        session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
    })
}

fn creds_from_file(path: &std::path::Path) -> Result<S3Credentials, LakeConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(
            "credentials",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    // Keys outside any profile, or in [default]; other profiles are ignored.
    let mut section: Option<String> = None;
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            section = Some(line[1..line.len() - 1].trim().to_string());
            continue;
        }
        if section.as_deref().is_some_and(|s| s != "default") {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            keys.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let missing = |k: &str| {
        bad(
            "credentials",
            format!("{} has no {k} in [default]", path.display()),
        )
    };
    let access_key_id = keys
        .remove("aws_access_key_id")
        .ok_or_else(|| missing("aws_access_key_id"))?;
    let secret = keys
        .remove("aws_secret_access_key")
        .ok_or_else(|| missing("aws_secret_access_key"))?;
    Ok(S3Credentials {
        access_key_id,
        secret_access_key: Secret::new(secret),
        session_token: keys.remove("aws_session_token").map(Secret::new),
    })
}

fn parse_tuning(opts: &BTreeMap<String, String>) -> Result<LakeTuning, LakeConfigError> {
    let mut t = LakeTuning::default();
    if let Some(v) = opts.get("multipart_threshold") {
        t.multipart_threshold = parse_size(v).map_err(|r| bad("multipart_threshold", r))?;
    }
    if let Some(v) = opts.get("part_size") {
        let n = parse_size(v).map_err(|r| bad("part_size", r))?;
        if n < MIN_PART_SIZE as u64 {
            return Err(bad(
                "part_size",
                format!("{n} bytes is below the S3 minimum of 5MiB"),
            ));
        }
        if n > 5 * 1024 * 1024 * 1024 {
            return Err(bad("part_size", "above the S3 maximum of 5GiB"));
        }
        t.part_size = n as usize;
    }
    if let Some(v) = opts.get("part_concurrency") {
        t.part_concurrency = parse_count(v).map_err(|r| bad("part_concurrency", r))?;
        if t.part_concurrency == 0 {
            return Err(bad("part_concurrency", "must be at least 1"));
        }
    }
    if let Some(b) = opt_bool(opts, "verify_read_back")? {
        t.verify_read_back = b;
    }
    if let Some(v) = opts.get("connect_timeout") {
        t.connect_timeout = parse_duration(v).map_err(|r| bad("connect_timeout", r))?;
    }
    if let Some(v) = opts.get("request_timeout") {
        t.request_timeout = parse_duration(v).map_err(|r| bad("request_timeout", r))?;
    }
    if let Some(v) = opts.get("max_retries") {
        t.max_retries = parse_count(v).map_err(|r| bad("max_retries", r))?;
    }
    if let Some(v) = opts.get("retry_timeout") {
        t.retry_timeout = parse_duration(v).map_err(|r| bad("retry_timeout", r))?;
    }
    Ok(t)
}

fn opt_bool(opts: &BTreeMap<String, String>, key: &str) -> Result<Option<bool>, LakeConfigError> {
    match opts.get(key).map(String::as_str) {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(v) => Err(bad(key, format!("expected true or false, got \"{v}\""))),
    }
}

fn parse_count(v: &str) -> Result<usize, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("expected a whole number, got \"{v}\""))
}

/// `123`, `5MiB`, `16MB`, `1GiB`, `64KiB`.
fn parse_size(v: &str) -> Result<u64, String> {
    let s = v.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a size like 16MiB, got \"{v}\""))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return Err(format!("expected a size like 16MiB, got \"{v}\"")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("\"{v}\" is too large"))
}

/// `250ms`, `5s`, `2m`.
fn parse_duration(v: &str) -> Result<Duration, String> {
    let s = v.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a duration like 5s or 250ms, got \"{v}\""))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        _ => Err(format!("expected a duration like 5s or 250ms, got \"{v}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI-very-secret-K7MDENG";

    fn env(k: &str) -> Option<String> {
        match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIDEXAMPLE".into()),
            "AWS_SECRET_ACCESS_KEY" => Some(SECRET.into()),
            "AWS_SESSION_TOKEN" => Some(format!("{SECRET}-token")),
            _ => None,
        }
    }

    fn no_opts() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn lake_s3_url_with_options() {
        let c = LakeConfig::parse_with_env(
            "s3://lake/site-a/x",
            [
                ("endpoint", "http://127.0.0.1:9000"),
                ("allow_http", "true"),
                ("region", "eu-west-1"),
                ("part_size", "5MiB"),
                ("multipart_threshold", "12MiB"),
                ("verify_read_back", "true"),
                ("connect_timeout", "200ms"),
            ],
            env,
        )
        .unwrap();
        let LakeBackend::S3(s) = &c.backend else {
            panic!("not s3")
        };
        assert_eq!(s.bucket, "lake");
        assert_eq!(s.prefix, "site-a/x");
        assert!(!s.virtual_hosted);
        assert_eq!(s.region, "eu-west-1");
        assert_eq!(c.tuning.part_size, 5 << 20);
        assert_eq!(c.tuning.multipart_threshold, 12 << 20);
        assert!(c.tuning.verify_read_back);
        assert_eq!(c.tuning.connect_timeout, Duration::from_millis(200));
        assert_eq!(s.credentials.access_key_id, "AKIDEXAMPLE");
    }

    #[test]
    fn lake_s3_options_checked_alone() {
        check_s3_options([
            ("endpoint", "http://10.0.0.5:9000"),
            ("allow_http", "true"),
            ("verify_read_back", "true"),
        ])
        .unwrap();
        check_s3_options(Vec::<(String, String)>::new()).unwrap();
        for (opts, field, reason) in [
            (vec![("endpoint", "not a url")], "endpoint", "not a URL"),
            (
                vec![("endpoint", "http://10.0.0.5")],
                "endpoint",
                "allow_http",
            ),
            (
                vec![("credentials", "env")],
                "credentials",
                "set by each policy",
            ),
            (vec![("colour", "red")], "colour", "unknown option"),
            (vec![("max_retries", "many")], "max_retries", ""),
        ] {
            let err = check_s3_options(opts.clone()).unwrap_err();
            assert_eq!(err.field, format!("lake.{field}"), "{opts:?}: {err}");
            assert!(err.reason.contains(reason), "{opts:?}: {err}");
        }
    }

    #[test]
    fn lake_file_url() {
        let c = LakeConfig::parse_with_env("file:///var/lib/lake", no_opts(), env).unwrap();
        assert_eq!(
            c.backend,
            LakeBackend::Local(LocalLake {
                root: "/var/lib/lake".into()
            })
        );
    }

    #[test]
    fn lake_bad_urls_and_options_name_the_field() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (
                "ftp://x/y",
                &[],
                "lake.url: scheme \"ftp\" is not supported (s3, file)",
            ),
            ("not a url", &[], "lake.url: not a URL"),
            ("s3:///prefix", &[], "lake.url: s3:// URL has no bucket"),
            (
                "s3://x/p",
                &[],
                "lake.url: \"x\" is not a valid bucket name",
            ),
            ("file://host/dir", &[], "lake.url: file:// URL names host"),
            ("file:///", &[], "lake.url: the lake cannot be the root"),
            (
                "s3://lake/p",
                &[("part_size", "1MiB")],
                "lake.part_size: 1048576 bytes is below",
            ),
            (
                "s3://lake/p",
                &[("part_size", "lots")],
                "lake.part_size: expected a size",
            ),
            (
                "s3://lake/p",
                &[("endpoint", "ftp://h")],
                "lake.endpoint: scheme \"ftp\"",
            ),
            (
                "s3://lake/p",
                &[("endpoint", "http://h:1")],
                "lake.endpoint: plain http://",
            ),
            (
                "s3://lake/p",
                &[("allow_http", "yes")],
                "lake.allow_http: expected true or false",
            ),
            (
                "s3://lake/p",
                &[("credentials", "vault")],
                "lake.credentials: expected",
            ),
            (
                "s3://lake/p",
                &[("colour", "red")],
                "lake.colour: unknown option",
            ),
            (
                "file:///l",
                &[("endpoint", "http://h")],
                "lake.endpoint: only applies to s3://",
            ),
            (
                "s3://lake/p",
                &[("retry_timeout", "5")],
                "lake.retry_timeout: expected a duration",
            ),
            (
                "s3://lake/p",
                &[("credentials", "file:/nonexistent/creds")],
                "lake.credentials: cannot read /nonexistent/creds",
            ),
        ];
        for (url, opts, want) in cases {
            let err = LakeConfig::parse_with_env(url, opts.iter().copied(), env).unwrap_err();
            assert!(
                err.to_string().starts_with(want),
                "{url} {opts:?}: got {err}, want {want}"
            );
        }
        let err = LakeConfig::parse_with_env("s3://lake/p", no_opts(), |_| None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "lake.credentials: env: AWS_ACCESS_KEY_ID is not set"
        );
    }

    #[test]
    fn lake_secrets_never_formatted() {
        let c =
            LakeConfig::parse_with_env("s3://lake/p", [("endpoint", "https://s3.example")], env)
                .unwrap();
        for shown in [format!("{c:?}"), format!("{c:#?}"), c.to_string()] {
            assert!(!shown.contains(SECRET), "secret leaked: {shown}");
        }
        // A secret in the URL is refused without being echoed.
        let url = format!("s3://AKID:{SECRET}@lake/p");
        let err = LakeConfig::parse_with_env(&url, no_opts(), env).unwrap_err();
        for shown in [format!("{err:?}"), err.to_string()] {
            assert!(!shown.contains(SECRET), "secret leaked: {shown}");
        }
        let url = format!("file:///lake?x={SECRET}");
        let _ = LakeConfig::parse_with_env(&url, no_opts(), env);
        // From a credentials file too.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("credentials");
        std::fs::write(
            &f,
            format!("[other]\naws_access_key_id = X\n[default]\naws_access_key_id = AKID2\naws_secret_access_key = {SECRET}\n"),
        )
        .unwrap();
        let c = LakeConfig::parse_with_env(
            "s3://lake/p",
            [("credentials", format!("file:{}", f.display()))],
            |_| None,
        )
        .unwrap();
        let LakeBackend::S3(s) = &c.backend else {
            panic!("not s3")
        };
        assert_eq!(s.credentials.access_key_id, "AKID2");
        assert_eq!(s.credentials.secret_access_key.expose(), SECRET);
        assert!(!format!("{c:?}").contains(SECRET));
    }
}
