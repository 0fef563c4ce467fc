//! The `strata.v1.Tiering` gRPC service (`proto/strata/v1/tiering.proto`):
//! what `strata ctl` talks to.
//!
//! [`TieringService`] answers from the catalog through any
//! [`CatalogClient`] (the Raft catalog in a node, [`MemoryCatalog`] in
//! tests) and hands runs and recalls to an [`Engine`] (the mover). It checks
//! every request before it proposes anything, stamps the entries it proposes
//! with the system clock, and maps errors to gRPC codes in one place:
//!
//! | error | code |
//! |---|---|
//! | a malformed request field, a policy that does not parse (every error, one a line, each with its path), [`Rejected::Invalid`] | `INVALID_ARGUMENT` |
//! | a named policy or volume that does not exist | `NOT_FOUND` |
//! | any other [`Rejected`], [`EngineError::Busy`] | `FAILED_PRECONDITION` |
//! | [`CatalogError::Unavailable`], [`EngineError::LakeUnavailable`] | `UNAVAILABLE` |
//! | [`CatalogError::Storage`], [`EngineError::Internal`] | `INTERNAL` |
//!
//! [`serve`] runs it on a unix socket or a TCP port until a shutdown future
//! completes:
//!
//! ```no_run
//! # async fn demo(engine: std::sync::Arc<impl strata_tiering::service::Engine>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use strata_tiering::catalog::MemoryCatalog;
//! use strata_tiering::service::{Listener, serve};
//!
//! let listener = Listener::bind("unix://./strata-data/strata.sock").await?;
//! serve(listener, Arc::new(MemoryCatalog::new()), engine, std::future::pending()).await?;
//! # Ok(()) }
//! ```
//!
//! [`Rejected`]: crate::catalog::Rejected
//! [`Rejected::Invalid`]: crate::catalog::Rejected::Invalid
//! [`CatalogError::Unavailable`]: crate::catalog::CatalogError::Unavailable
//! [`CatalogError::Storage`]: crate::catalog::CatalogError::Storage
//! [`MemoryCatalog`]: crate::catalog::MemoryCatalog

mod convert;
mod engine;
mod error;
mod listen;
mod rpc;
mod validate;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

pub use engine::{
    Engine, EngineError, Progress, RecallFailure, RecallOutcome, RecallProgress, RecallRequest,
    RunRequest,
};
pub use listen::{Listener, ServeError, nodelay_incoming};
pub use strata_proto::strata::v1::tiering_server::TieringServer;

use crate::catalog::CatalogClient;

/// Where `strata up` serves the tiering API, and where `strata ctl` looks
/// for it unless told otherwise (relative to the working directory, beside
/// the rest of `strata up`'s state in `./strata-data`).
pub const DEFAULT_ENDPOINT: &str = "unix://./strata-data/strata.sock";

/// What the Raft layer says about this catalog replica, shown by `Status`.
/// Every field is optional: a one-process catalog without Raft has none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CatalogInfo {
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: Option<String>,
    /// The current Raft term.
    pub term: Option<u64>,
    /// The leader's node id or address, when one is known.
    pub leader: Option<String>,
    /// The log index last applied; the service reads it from the state
    /// machine when this is `None`.
    pub applied_index: Option<u64>,
}

type InfoFn = dyn Fn() -> CatalogInfo + Send + Sync;

/// The `strata.v1.Tiering` service over a catalog and an engine.
pub struct TieringService<C, E> {
    catalog: Arc<C>,
    engine: Arc<E>,
    info: Arc<InfoFn>,
    /// The node whose label volumes added here get (a shared catalog).
    node: Option<Arc<str>>,
}

impl<C, E> Clone for TieringService<C, E> {
    fn clone(&self) -> Self {
        Self {
            catalog: self.catalog.clone(),
            engine: self.engine.clone(),
            info: self.info.clone(),
            node: self.node.clone(),
        }
    }
}

impl<C, E> fmt::Debug for TieringService<C, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieringService").finish_non_exhaustive()
    }
}

impl<C: CatalogClient, E: Engine> TieringService<C, E> {
    /// The service over `catalog` and `engine`.
    pub fn new(catalog: Arc<C>, engine: Arc<E>) -> Self {
        Self {
            catalog,
            engine,
            info: Arc::new(CatalogInfo::default),
            node: None,
        }
    }

    /// Labels every volume added through this service with `node`
    /// ([`NODE_LABEL`](crate::catalog::NODE_LABEL)): the catalog is shared
    /// by many nodes, and this node's agent works only on its own volumes.
    pub fn with_node(mut self, node: &str) -> Self {
        self.node = Some(node.into());
        self
    }

    /// Where `Status` learns the catalog's role, term and leader (from the
    /// Raft layer's metrics); called once per `Status`.
    pub fn with_catalog_info(
        mut self,
        info: impl Fn() -> CatalogInfo + Send + Sync + 'static,
    ) -> Self {
        self.info = Arc::new(info);
        self
    }

    /// The tonic service, to add to a server with other services.
    pub fn into_server(self) -> TieringServer<Self> {
        TieringServer::new(self)
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting,
    /// finishes the requests in flight and removes a socket file it bound.
    pub async fn serve(
        self,
        listener: Listener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        listen::serve(self.into_server(), listener, shutdown).await
    }
}

/// Serves the tiering API over `catalog` and `engine` on `listener` until
/// `shutdown` completes. See [`TieringService`] to add catalog info or to
/// serve it beside other services.
pub async fn serve<C: CatalogClient, E: Engine>(
    listener: Listener,
    catalog: Arc<C>,
    engine: Arc<E>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    TieringService::new(catalog, engine)
        .serve(listener, shutdown)
        .await
}
