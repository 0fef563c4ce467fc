//! strata's site trust: who may talk to the catalog.
//!
//! A site has one certificate authority (the *site CA*, made by
//! [`init_ca`], `strata certs init`). Every part of the site that speaks to
//! the catalog over TCP holds a certificate from it ([`issue`], `strata
//! certs issue`) that names its [`Role`] in a URI subject alternative name
//! (`spiffe://strata.io/<role>[/<name>]`):
//!
//! - `replica`: a `strata catalog` replica; votes, replicates, installs
//!   snapshots, and may do anything a client may;
//! - `node` with the node's name: a node agent; keeps a learner and
//!   proposes commands about its own node's volumes only;
//! - `admin`: an operator (`strata ctl`): membership, policies, any volume.
//!
//! [`SiteTls`] loads a directory holding `ca.crt`, `tls.crt` and `tls.key`
//! (the names of a Kubernetes TLS Secret and of cert-manager's), re-reads
//! it when the files change, and makes the rustls configurations of both
//! ends: [`incoming`] serves mutual TLS 1.3 on a TCP listener and records
//! each peer's verified [`Identity`] (or why it was refused) for the gRPC
//! services, which read it with [`peer_identity`]; [`TlsConnector`] is the
//! client side for tonic channels, and checks that the server holds a
//! certificate of the role the caller expects.
//!
//! A client's certificate is checked once per connection, after the
//! handshake, so that a refused client is told why in a gRPC status
//! (UNAUTHENTICATED: no certificate, another CA's, expired, no role) rather
//! than by a bare TLS alert. The handshake itself still proves that the
//! client holds the key of the certificate it sent.

#![deny(missing_docs, unreachable_pub)]

mod authz;
mod client;
mod error;
mod files;
mod issue;
mod local;
mod material;
mod refusal;
mod role;
mod server;
mod verify;

pub use authz::{peer_identity, require_role};
pub use client::{Expect, TlsConnector};
pub use error::TrustError;
pub use files::{CA_CERT, CA_KEY, TLS_CERT, TLS_KEY};
pub use issue::{IssueRequest, ensure_local_site, init_ca, issue};
pub use local::{LocalAccess, bind_local, local_peers};
pub use material::SiteTls;
pub use refusal::Refusal;
pub use role::{Identity, Role, TRUST_DOMAIN};
pub use server::{PeerInfo, TlsConn, incoming};
