//! What the services ask of a call: who made it, and may they.

use tonic::{Request, Status};

use crate::role::{Identity, Role};
use crate::server::PeerInfo;

/// The verified identity of the peer that made `request`, or the status to
/// refuse it with: UNAUTHENTICATED, saying why (no TLS, no certificate,
/// another CA's, expired, no role).
pub fn peer_identity<T>(request: &Request<T>) -> Result<Identity, Status> {
    match request.extensions().get::<PeerInfo>() {
        Some(PeerInfo {
            identity: Ok(id), ..
        }) => Ok(id.clone()),
        Some(PeerInfo {
            identity: Err(why), ..
        }) => Err(Status::unauthenticated(why.to_string())),
        None => Err(Status::unauthenticated(
            "this call did not come over mutual TLS: the catalog serves only the site's own \
             parts, each with a certificate from the site CA",
        )),
    }
}

/// The peer's identity if its role is one of `roles`; else PERMISSION_DENIED
/// naming the call (`what`), the peer and the roles that may make it.
pub fn require_role<T>(
    request: &Request<T>,
    what: &str,
    roles: &[Role],
) -> Result<Identity, Status> {
    let id = peer_identity(request)?;
    if roles.contains(&id.role) {
        return Ok(id);
    }
    let allowed: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
    Err(Status::permission_denied(format!(
        "{what}: a {id} certificate may not do this; only {} may",
        allowed.join(" or ")
    )))
}
