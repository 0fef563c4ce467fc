//! The lake a policy moves files to: an `object_store` URL and where its
//! credentials come from.

use std::path::PathBuf;

use object_store::ObjectStoreScheme;
use url::Url;

/// Where the lake's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The usual environment variables of the store (`AWS_ACCESS_KEY_ID`, …).
    Env,
    /// A credentials file at this absolute path.
    File(PathBuf),
}

/// A validated lake target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lake {
    pub(crate) url: Url,
    pub(crate) credentials: Credentials,
}

impl Lake {
    /// The lake's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Where its credentials come from.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
}

/// Checks an `object_store` URL (`s3://bucket/prefix`, `file:///srv/lake`).
pub(crate) fn parse_url(text: &str) -> Result<Url, String> {
    let expected = "expected an object store URL like s3://bucket/prefix or file:///srv/lake";
    let url = Url::parse(text).map_err(|e| format!("{expected}, got {text:?}: {e}"))?;
    ObjectStoreScheme::parse(&url).map_err(|_| {
        format!(
            "{expected}, got {text:?}: unsupported scheme {}",
            url.scheme()
        )
    })?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials: use credentials: env or a file".to_owned());
    }
    Ok(url)
}

/// `env`, or the absolute path of a credentials file.
pub(crate) fn parse_credentials(text: &str) -> Result<Credentials, String> {
    match text {
        "env" => Ok(Credentials::Env),
        path if path.starts_with('/') => Ok(Credentials::File(PathBuf::from(path))),
        _ => Err(format!(
            "expected env or the absolute path of a credentials file, got {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_lake_urls() {
        for ok in [
            "s3://lake/site-a",
            "s3://lake",
            "file:///srv/lake",
            "gs://bucket/x",
            "az://container/x",
            "https://minio.local:9000/lake",
            "memory:///",
        ] {
            assert!(parse_url(ok).is_ok(), "{ok}: {:?}", parse_url(ok));
        }
        for (bad, reason) in [
            ("lake/site-a", "expected an object store URL"),
            ("ftp://lake/x", "unsupported scheme ftp"),
            ("s3://key:secret@lake/x", "must not carry credentials"),
            ("", "expected an object store URL"),
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(reason), "{bad}: {e}");
        }
    }

    #[test]
    fn policy_lake_credentials() {
        assert_eq!(parse_credentials("env"), Ok(Credentials::Env));
        assert_eq!(
            parse_credentials("/etc/strata/lake.env"),
            Ok(Credentials::File("/etc/strata/lake.env".into()))
        );
        for bad in ["ENV", "lake.env", "", "file"] {
            assert!(
                parse_credentials(bad)
                    .unwrap_err()
                    .starts_with("expected env"),
                "{bad}"
            );
        }
    }
}
