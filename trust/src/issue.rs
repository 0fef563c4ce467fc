//! Making the site CA and the role certificates (`strata certs`).
//!
//! Keys are ECDSA P-256. Role certificates serve and connect (server and
//! client authentication both), because a replica does both. Key files are
//! written 0600, certificates 0644, and nothing is ever overwritten.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::TrustError;
use crate::files::{self, CA_CERT, CA_KEY, TLS_CERT, TLS_KEY};
use crate::role::Identity;

/// What certificate to issue.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The role and name it carries.
    pub identity: Identity,
    /// DNS names to add (only for the logs and other tools: strata checks
    /// the role, not the host name).
    pub dns_names: Vec<String>,
    /// IP addresses to add (likewise).
    pub ips: Vec<IpAddr>,
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until.
    pub not_after: SystemTime,
}

impl IssueRequest {
    /// A request for `identity`, valid from now for `valid_for`.
    pub fn new(identity: Identity, valid_for: Duration) -> Self {
        let now = SystemTime::now();
        Self {
            identity,
            dns_names: Vec::new(),
            ips: Vec::new(),
            // A little slack for clocks a few minutes apart.
            not_before: now - Duration::from_secs(300),
            not_after: now + valid_for,
        }
    }
}

/// Makes a site CA in `dir` (`ca.crt`, `ca.key`), valid for `valid_for`.
/// `site` names it in its subject. Refuses to overwrite either file.
pub fn init_ca(dir: &Path, site: &str, valid_for: Duration) -> Result<(), TrustError> {
    let cert_path = files::at(dir, CA_CERT);
    let key_path = files::at(dir, CA_KEY);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(TrustError::Exists { path: p.clone() });
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| TrustError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let key = KeyPair::generate()?;
    let params = ca_params(site, valid_for)?;
    let cert = params.self_signed(&key)?;
    files::write_new(&key_path, &key.serialize_pem(), 0o600)?;
    files::write_new(&cert_path, &cert.pem(), 0o644)?;
    Ok(())
}

fn ca_params(site: &str, valid_for: Duration) -> Result<CertificateParams, TrustError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    let cn = if site.is_empty() {
        "strata site CA".to_owned()
    } else {
        format!("strata site CA {site}")
    };
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = SystemTime::now();
    params.not_before = (now - Duration::from_secs(300)).into();
    params.not_after = (now + valid_for).into();
    Ok(params)
}

/// Issues a certificate for `request` with the CA in `ca_dir` and writes it
/// to `out_dir` as `tls.crt` and `tls.key`, with a copy of `ca.crt`: a
/// directory [`SiteTls::load`](crate::SiteTls::load) reads. Refuses to
/// overwrite any of them.
pub fn issue(ca_dir: &Path, request: &IssueRequest, out_dir: &Path) -> Result<(), TrustError> {
    if request.not_after <= request.not_before {
        return Err(TrustError::Request {
            field: "not_after",
            reason: "must be after not_before".to_owned(),
        });
    }
    let ca_cert_path = files::at(ca_dir, CA_CERT);
    let ca_key_path = files::at(ca_dir, CA_KEY);
    let ca_pem = String::from_utf8(files::read(&ca_cert_path)?)
        .map_err(|_| files::invalid(&ca_cert_path, "is not text".to_owned()))?;
    let ca_key_pem = String::from_utf8(files::read(&ca_key_path)?)
        .map_err(|_| files::invalid(&ca_key_path, "is not text".to_owned()))?;
    let ca_key = KeyPair::from_pem(&ca_key_pem)
        .map_err(|e| files::invalid(&ca_key_path, format!("not a private key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .map_err(|e| files::invalid(&ca_cert_path, format!("not a CA certificate: {e}")))?;

    let outs = [TLS_CERT, TLS_KEY, CA_CERT].map(|n| files::at(out_dir, n));
    // ca.crt may be there already when issuing into the CA's own directory.
    let same_dir = out_dir == ca_dir;
    for p in &outs[..if same_dir { 2 } else { 3 }] {
        if p.exists() {
            return Err(TrustError::Exists { path: p.clone() });
        }
    }
    std::fs::create_dir_all(out_dir).map_err(|source| TrustError::Io {
        path: out_dir.to_owned(),
        source,
    })?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("strata {}", request.identity));
    params.distinguished_name = dn;
    params
        .subject_alt_names
        .push(SanType::URI(request.identity.uri().try_into().map_err(
            |e| TrustError::Request {
                field: "name",
                reason: format!("not an ASCII URI: {e}"),
            },
        )?));
    for dns in &request.dns_names {
        params
            .subject_alt_names
            .push(SanType::DnsName(dns.clone().try_into().map_err(|e| {
                TrustError::Request {
                    field: "dns",
                    reason: format!("{dns:?}: {e}"),
                }
            })?));
    }
    for ip in &request.ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = request.not_before.into();
    params.not_after = request.not_after.into();
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    files::write_new(&outs[1], &key.serialize_pem(), 0o600)?;
    files::write_new(&outs[0], &cert.pem(), 0o644)?;
    if !same_dir {
        files::write_new(&outs[2], &ca_pem, 0o644)?;
    }
    Ok(())
}

/// A site made on one machine, for `strata up` and tests: the CA in
/// `dir/ca` (made if missing, valid for ten years) and one TLS directory per
/// identity in `dir/<role>` or `dir/<role>-<name>` (issued if missing,
/// valid for a year). Answers those directories, in the order asked.
pub fn ensure_local_site(
    dir: &Path,
    site: &str,
    identities: &[Identity],
) -> Result<Vec<std::path::PathBuf>, TrustError> {
    const YEAR: Duration = Duration::from_secs(365 * 86_400);
    let ca = dir.join("ca");
    if !files::at(&ca, CA_KEY).exists() {
        init_ca(&ca, site, 10 * YEAR)?;
    }
    identities
        .iter()
        .map(|id| {
            let out = if id.name.is_empty() {
                dir.join(id.role.as_str())
            } else {
                dir.join(format!("{}-{}", id.role, id.name))
            };
            if !files::at(&out, TLS_KEY).exists() {
                issue(&ca, &IssueRequest::new(id.clone(), YEAR), &out)?;
            }
            Ok(out)
        })
        .collect()
}
