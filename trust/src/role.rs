//! Roles and identities, and how a certificate carries them: one URI
//! subject alternative name `spiffe://strata.io/<role>[/<name>]`.

use std::fmt;
use std::str::FromStr;

use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The trust domain of the URIs in strata's certificates.
pub const TRUST_DOMAIN: &str = "strata.io";

/// What a certificate lets its holder do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// A `strata catalog` replica: votes, replicates, installs snapshots.
    Replica,
    /// A node agent: its learner receives the log; it proposes commands
    /// about its own node's volumes.
    Node,
    /// An operator: membership, policies, any volume.
    Admin,
}

impl Role {
    /// The role's name in URIs, flags and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Replica => "replica",
            Role::Node => "node",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "replica" => Ok(Role::Replica),
            "node" => Ok(Role::Node),
            "admin" => Ok(Role::Admin),
            other => Err(format!("{other:?} is not a role (replica, node or admin)")),
        }
    }
}

/// Who a verified certificate names: a role and, for a node, the node's
/// name (for the others a name is optional, kept for the logs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    /// What the holder may do.
    pub role: Role,
    /// The node's name for [`Role::Node`]; otherwise free (may be empty).
    pub name: String,
}

impl Identity {
    /// An identity, its name checked: a node needs one; names are DNS-like
    /// (lowercase letters, digits, `-` and `.`, at most 253 bytes), as
    /// Kubernetes node names are.
    pub fn new(role: Role, name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        if role == Role::Node && name.is_empty() {
            return Err("a node certificate needs the node's name".to_owned());
        }
        check_name(&name)?;
        Ok(Self { role, name })
    }

    /// The URI subject alternative name that carries this identity.
    pub fn uri(&self) -> String {
        if self.name.is_empty() {
            format!("spiffe://{TRUST_DOMAIN}/{}", self.role)
        } else {
            format!("spiffe://{TRUST_DOMAIN}/{}/{}", self.role, self.name)
        }
    }

    /// The identity a URI names, if it is one of strata's.
    pub fn from_uri(uri: &str) -> Result<Self, String> {
        let rest = uri
            .strip_prefix("spiffe://")
            .and_then(|r| r.strip_prefix(TRUST_DOMAIN))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| format!("{uri:?} is not a spiffe://{TRUST_DOMAIN}/ URI"))?;
        let (role, name) = rest.split_once('/').unwrap_or((rest, ""));
        Identity::new(role.parse()?, name).map_err(|e| format!("{uri:?}: {e}"))
    }

    /// The identity a certificate (DER) carries: its one strata URI.
    pub fn from_cert(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| format!("the certificate does not parse: {e}"))?;
        let subject = cert.subject().to_string();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| format!("certificate {subject:?}: subject alternative names: {e}"))?;
        let uris: Vec<&str> = san
            .map(|ext| {
                ext.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        match uris.as_slice() {
            [one] => Identity::from_uri(one).map_err(|e| format!("certificate {subject:?}: {e}")),
            [] => Err(format!(
                "certificate {subject:?} carries no strata role (a spiffe://{TRUST_DOMAIN}/<role> \
                 URI name; `strata certs issue` makes one)"
            )),
            _ => Err(format!(
                "certificate {subject:?} carries {} spiffe URIs; strata accepts exactly one",
                uris.len()
            )),
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.is_empty() {
            write!(f, "{}", self.role)
        } else {
            write!(f, "{} {}", self.role, self.name)
        }
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.len() > 253 {
        return Err(format!("name {name:?}: longer than 253 bytes"));
    }
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if let Some(c) = name.chars().find(|c| !ok(*c)) {
        return Err(format!(
            "name {name:?}: {c:?} is not allowed (lowercase letters, digits, '-' and '.')"
        ));
    }
    if name.starts_with(['-', '.']) || name.ends_with(['-', '.']) {
        return Err(format!(
            "name {name:?}: must start and end with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_through_their_uri() {
        for (role, name) in [
            (Role::Replica, ""),
            (Role::Node, "edge-1"),
            (Role::Admin, "ops.a"),
        ] {
            let id = Identity::new(role, name).unwrap();
            assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
        }
        assert_eq!(
            Identity::new(Role::Node, "edge-1").unwrap().uri(),
            "spiffe://strata.io/node/edge-1"
        );
    }

    #[test]
    fn bad_uris_and_names_are_refused_with_the_reason() {
        for (uri, why) in [
            ("spiffe://other.org/node/a", "not a spiffe://strata.io/"),
            ("spiffe://strata.io/root", "not a role"),
            ("spiffe://strata.io/node", "needs the node's name"),
            ("spiffe://strata.io/node/../x", "not allowed"),
            ("spiffe://strata.io/node/Edge", "not allowed"),
            ("spiffe://strata.io/node/-a", "start and end"),
        ] {
            let e = Identity::from_uri(uri).unwrap_err();
            assert!(e.contains(why), "{uri}: {e}");
        }
    }
}
