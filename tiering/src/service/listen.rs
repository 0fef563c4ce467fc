//! Where the service listens: a unix socket (the default: only local users
//! with access to the socket's directory can steer tiering) or a TCP port.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use strata_proto::strata::v1::tiering_server::{Tiering, TieringServer};
use strata_trust::LocalAccess;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

/// Why the service could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The endpoint is not one the service can listen on.
    #[error("endpoint {0:?}: expected unix://PATH (absolute or relative) or tcp://HOST:PORT")]
    Endpoint(String),
    /// Another server answers on the socket already.
    #[error("{}: another server is listening on this socket", .0.display())]
    InUse(PathBuf),
    /// Binding failed.
    #[error("{endpoint}: {source}")]
    Bind {
        /// The endpoint as given.
        endpoint: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The gRPC server failed.
    #[error("serving the tiering API: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// A bound socket, ready for [`serve`](super::serve).
#[derive(Debug)]
pub enum Listener {
    /// A unix socket; `path` is removed when the server stops, if set.
    Unix {
        /// The listening socket.
        listener: UnixListener,
        /// The socket file this listener created.
        path: Option<PathBuf>,
    },
    /// A TCP port.
    Tcp(TcpListener),
}

impl Listener {
    /// Binds `unix://PATH` (`unix:///abs/path` or `unix://./rel/path`; the
    /// directory is created, a stale socket file replaced) or `tcp://HOST:PORT`
    /// (`http://` is accepted too; port 0 picks a free port).
    pub async fn bind(endpoint: &str) -> Result<Self, ServeError> {
        let bind_err = |source| ServeError::Bind {
            endpoint: endpoint.to_owned(),
            source,
        };
        if let Some(path) = endpoint
            .strip_prefix("unix://")
            .or_else(|| endpoint.strip_prefix("unix:"))
        {
            if path.is_empty() {
                return Err(ServeError::Endpoint(endpoint.to_owned()));
            }
            let path = PathBuf::from(path);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(bind_err)?;
            }
            remove_stale_socket(&path).map_err(|e| match e {
                Stale::InUse => ServeError::InUse(path.clone()),
                Stale::Io(e) => bind_err(e),
            })?;
            // Owner-only whatever the umask: whoever can open it steers
            // tiering (recall, policies, volumes).
            let listener =
                strata_trust::bind_local(&path, LocalAccess::default()).map_err(bind_err)?;
            return Ok(Self::Unix {
                listener,
                path: Some(path),
            });
        }
        let addr = endpoint
            .strip_prefix("tcp://")
            .or_else(|| endpoint.strip_prefix("http://"))
            .ok_or_else(|| ServeError::Endpoint(endpoint.to_owned()))?;
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        Ok(Self::Tcp(listener))
    }

    /// The endpoint a client connects to (`unix://PATH`, `http://IP:PORT`).
    pub fn endpoint(&self) -> String {
        match self {
            Self::Unix { listener, path } => {
                let p = path.clone().or_else(|| {
                    listener
                        .local_addr()
                        .ok()
                        .and_then(|a| a.as_pathname().map(Path::to_owned))
                });
                match p {
                    Some(p) => format!("unix://{}", p.display()),
                    None => "unix://(unnamed)".to_owned(),
                }
            }
            Self::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("http://{a}"),
                Err(_) => "http://(unknown)".to_owned(),
            },
        }
    }
}

impl From<UnixListener> for Listener {
    fn from(listener: UnixListener) -> Self {
        Self::Unix {
            listener,
            path: None,
        }
    }
}

impl From<TcpListener> for Listener {
    fn from(listener: TcpListener) -> Self {
        Self::Tcp(listener)
    }
}

enum Stale {
    InUse,
    Io(io::Error),
}

/// Removes a socket file left by a server that is gone; refuses to take the
/// socket of one that still answers, or to remove anything but a socket.
fn remove_stale_socket(path: &Path) -> Result<(), Stale> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Stale::Io(e)),
        Ok(m) if !m.file_type().is_socket() => {
            return Err(Stale::Io(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "exists and is not a socket",
            )));
        }
        Ok(_) => {}
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(Stale::InUse);
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Stale::Io(e)),
        _ => Ok(()),
    }
}

/// The connections `listener` accepts, each with TCP_NODELAY: a small
/// answer must not wait for the peer's delayed ACK (Nagle's algorithm cost a
/// catalog write ≈ 40 ms at the 99th percentile).
pub fn nodelay_incoming(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|s| {
            if let Err(e) = s.set_nodelay(true) {
                tracing::warn!("TCP_NODELAY on an accepted connection: {e}");
            }
        })
    })
}

pub(super) async fn serve<T: Tiering>(
    service: TieringServer<T>,
    listener: Listener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let endpoint = listener.endpoint();
    info!(%endpoint, "serving the tiering API");
    let router = tonic::transport::Server::builder().add_service(service);
    match listener {
        Listener::Unix { listener, path } => {
            let result = router
                .serve_with_incoming_shutdown(
                    strata_trust::local_peers(listener, LocalAccess::default()),
                    shutdown,
                )
                .await;
            if let Some(p) = path {
                let _ = std::fs::remove_file(p);
            }
            result?;
        }
        Listener::Tcp(listener) => {
            router
                .serve_with_incoming_shutdown(nodelay_incoming(listener), shutdown)
                .await?;
        }
    }
    Ok(())
}
