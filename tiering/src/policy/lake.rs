//! The lake a policy moves files to: an `object_store` URL and where its
//! credentials come from.

use std::path::PathBuf;

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
/// The lake URL of a policy, checked by the lake's own rule
/// ([`crate::lake::check_url`]) so a policy never names a lake strata cannot open.
pub(crate) fn parse_url(text: &str) -> Result<Url, String> {
    // The text is never echoed: it may carry a secret.
    crate::lake::check_url(text).map_err(|e| {
        format!(
            "{} (a lake URL looks like s3://bucket/prefix or file:///srv/lake)",
            e.reason
        )
    })
}

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
        for ok in ["s3://lake/site-a", "s3://lake", "file:///srv/lake"] {
            assert!(parse_url(ok).is_ok(), "{ok}: {:?}", parse_url(ok));
        }
        for (bad, reason) in [
            ("lake/site-a", "not a URL"),
            ("", "not a URL"),
            ("ftp://lake/x", "scheme \"ftp\" is not supported (s3, file)"),
            ("gs://bucket/x", "scheme \"gs\" is not supported (s3, file)"),
            (
                "memory:///",
                "scheme \"memory\" is not supported (s3, file)",
            ),
            (
                "s3://key:secret@lake/x",
                "credentials in the URL are not supported",
            ),
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(reason), "{bad}: {e}");
            assert!(!e.contains("secret"), "a secret leaked: {e}");
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
