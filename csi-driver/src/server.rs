//! Serving: the three CSI services on a unix socket and `/metrics` on TCP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_proto::csi::v1 as csi;
use tracing::info;

use crate::config::{Backend, NodeConfig};
use crate::controller::ControllerService;
use crate::driver::Driver;
use crate::identity::IdentityService;
use crate::lvm::{Lvm, cli::CliRunner, tool::LvmTool};
use crate::node::NodeService;

/// Why the node could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The endpoint is not `unix:///absolute/path`.
    #[error("--csi-endpoint: {0:?} is not unix:///<absolute path>")]
    Endpoint(String),
    /// The socket could not be bound.
    #[error("cannot listen on {path}: {source}")]
    Bind {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The configured backend is not built in.
    #[error("lvm.backend: {0}")]
    Backend(String),
    /// The metrics listener failed.
    #[error("metrics on {addr}: {source}")]
    Metrics {
        /// Listen address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The socket path of a `unix:///path` (or `unix:/path`) endpoint.
pub fn socket_path(endpoint: &str) -> Result<PathBuf, ServeError> {
    let p = endpoint
        .strip_prefix("unix://")
        .or_else(|| endpoint.strip_prefix("unix:"))
        .ok_or_else(|| ServeError::Endpoint(endpoint.to_owned()))?;
    if !p.starts_with('/') {
        return Err(ServeError::Endpoint(endpoint.to_owned()));
    }
    Ok(PathBuf::from(p))
}

/// The LVM backend the config asks for.
pub fn open_lvm(config: &NodeConfig) -> Result<Arc<dyn Lvm>, ServeError> {
    let options = config.lvm.options.clone();
    match config.lvm.backend {
        Backend::Cli => Ok(Arc::new(LvmTool::new(CliRunner::new(&options), options))),
        #[cfg(feature = "lvm2cmd")]
        Backend::Lvm2cmd => {
            let runner = crate::lvm::lib2cmd::LibRunner::new()
                .map_err(|e| ServeError::Backend(e.to_string()))?;
            Ok(Arc::new(LvmTool::new(runner, options)))
        }
        #[cfg(not(feature = "lvm2cmd"))]
        Backend::Lvm2cmd => Err(ServeError::Backend(
            "\"lvm2cmd\" is not built into this binary (build with --features lvm2cmd)".to_owned(),
        )),
    }
}

/// Serve CSI on `socket` until `shutdown` resolves. A stale socket file is replaced.
pub async fn serve_csi(
    driver: Arc<Driver>,
    socket: &Path,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ServeError::Bind {
            path: socket.to_owned(),
            source,
        })?;
    }
    match std::fs::remove_file(socket) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(ServeError::Bind {
                path: socket.to_owned(),
                source: e,
            });
        }
        _ => {}
    }
    // Owner-only whatever the umask, and only root's (the kubelet's, the
    // sidecars') or this user's connections are served: a CSI call mounts,
    // formats and deletes volumes.
    let access = strata_trust::LocalAccess::default();
    let listener = strata_trust::bind_local(socket, access).map_err(|source| ServeError::Bind {
        path: socket.to_owned(),
        source,
    })?;
    info!(socket = %socket.display(), node = %driver.node_id, backend = driver.lvm.backend(), "serving CSI");
    tonic::transport::Server::builder()
        .add_service(csi::identity_server::IdentityServer::new(IdentityService(
            driver.clone(),
        )))
        .add_service(csi::controller_server::ControllerServer::new(
            ControllerService(driver.clone()),
        ))
        .add_service(csi::node_server::NodeServer::new(NodeService(
            driver.clone(),
        )))
        .serve_with_incoming_shutdown(strata_trust::local_peers(listener, access), shutdown)
        .await?;
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// More metrics in OpenMetrics text, served after the driver's own.
pub type ExtraMetrics = Arc<dyn Fn() -> String + Send + Sync>;

/// Binds the metrics listener on `addr`, so that a port in use fails the
/// start instead of a background task.
pub async fn bind_metrics(addr: SocketAddr) -> Result<tokio::net::TcpListener, ServeError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Metrics { addr, source })
}

/// Serve `/metrics` on `listener` until the process ends: the driver's metrics
/// (the inventory refreshed first when its report is older than
/// [`crate::inventory::MAX_AGE`]), then `extra`'s (one exposition: a single
/// `# EOF` at the end).
pub async fn serve_metrics(
    driver: Arc<Driver>,
    listener: tokio::net::TcpListener,
    extra: Option<ExtraMetrics>,
) -> Result<(), ServeError> {
    serve_openmetrics(listener, move || {
        let d = driver.clone();
        let extra = extra.clone();
        async move {
            // The inventory series come from a cached LVM report,
            // refreshed here (off the async workers) when it is stale.
            let refresh = d.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || refresh.refresh_inventory()).await {
                tracing::warn!("metrics: inventory refresh failed: {e}");
            }
            let mut text = d.metrics.encode();
            if let Some(more) = extra {
                let more = more();
                text = format!("{}{}", text.trim_end_matches("# EOF\n"), more);
            }
            text
        }
    })
    .await
}

/// Serve `/metrics` on `listener` (from [`bind_metrics`]) until the process
/// ends, each scrape answered with what `render` returns (OpenMetrics text).
pub async fn serve_openmetrics<F, Fut>(
    listener: tokio::net::TcpListener,
    render: F,
) -> Result<(), ServeError>
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = String> + Send + 'static,
{
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let render = render.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    render().await,
                )
            }
        }),
    );
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Metrics {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
    info!(%addr, "serving metrics");
    axum::serve(listener, app)
        .await
        .map_err(|source| ServeError::Metrics { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert_eq!(
            socket_path("unix:/csi/csi.sock").unwrap(),
            PathBuf::from("/csi/csi.sock")
        );
        assert!(socket_path("tcp://1.2.3.4:5").is_err());
        assert!(socket_path("unix://relative").is_err());
    }
}
