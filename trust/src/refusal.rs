//! Why a peer's certificate was refused, in words an operator can act on.

use std::fmt;
use std::time::SystemTime;

use rustls::CertificateError;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a peer was not let in.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// It sent no certificate.
    NoCertificate,
    /// Its certificate's validity ended.
    Expired {
        /// The certificate's subject.
        subject: String,
        /// When it ended (RFC 3339).
        not_after: String,
    },
    /// Its certificate is not valid yet.
    NotYetValid {
        /// The certificate's subject.
        subject: String,
        /// When it starts (RFC 3339).
        not_before: String,
    },
    /// Its certificate was not issued by this site's CA.
    OtherCa {
        /// The certificate's subject.
        subject: String,
        /// Who issued it.
        issuer: String,
        /// This site's CA.
        site_ca: String,
    },
    /// It is from this CA but carries no usable strata role.
    NoRole(String),
    /// Anything else the check found.
    Invalid {
        /// The certificate's subject.
        subject: String,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoCertificate => write!(
                f,
                "no client certificate: the catalog serves only the site's own parts, over mutual \
                 TLS with a certificate from the site CA (`strata certs issue`)"
            ),
            Refusal::Expired { subject, not_after } => {
                write!(f, "the certificate {subject:?} expired at {not_after}")
            }
            Refusal::NotYetValid {
                subject,
                not_before,
            } => write!(
                f,
                "the certificate {subject:?} is not valid before {not_before} (is a clock wrong?)"
            ),
            Refusal::OtherCa {
                subject,
                issuer,
                site_ca,
            } => write!(
                f,
                "the certificate {subject:?} is issued by {issuer:?}, not by this site's CA \
                 {site_ca:?}"
            ),
            Refusal::NoRole(why) => f.write_str(why),
            Refusal::Invalid { subject, reason } => {
                write!(f, "the certificate {subject:?}: {reason}")
            }
        }
    }
}

impl Refusal {
    /// The refusal a failed chain check of `cert` means.
    pub(crate) fn from_chain_error(
        e: &rustls::Error,
        cert: &CertificateDer<'_>,
        site_ca: &str,
        _now: SystemTime,
    ) -> Refusal {
        let parsed = X509Certificate::from_der(cert).ok().map(|(_, c)| c);
        let subject = parsed
            .as_ref()
            .map_or_else(|| "(unparsable)".to_owned(), |c| c.subject().to_string());
        let time = |t: Option<String>| t.unwrap_or_else(|| "(unknown)".to_owned());
        match e {
            rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            ) => Refusal::Expired {
                subject,
                not_after: time(parsed.as_ref().map(|c| rfc3339(c.validity().not_after))),
            },
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
            ) => Refusal::NotYetValid {
                subject,
                not_before: time(parsed.as_ref().map(|c| rfc3339(c.validity().not_before))),
            },
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => Refusal::OtherCa {
                subject,
                issuer: parsed
                    .as_ref()
                    .map_or_else(|| "(unknown)".to_owned(), |c| c.issuer().to_string()),
                site_ca: site_ca.to_owned(),
            },
            other => Refusal::Invalid {
                subject,
                reason: other.to_string(),
            },
        }
    }
}

/// A certificate's subject, for messages.
pub(crate) fn subject(cert: &CertificateDer<'_>) -> String {
    X509Certificate::from_der(cert)
        .map(|(_, c)| c.subject().to_string())
        .unwrap_or_else(|_| "(unparsable)".to_owned())
}

fn rfc3339(t: x509_parser::time::ASN1Time) -> String {
    t.to_datetime()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
