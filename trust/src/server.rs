//! The server end: mutual TLS 1.3 on a TCP listener, every peer's identity
//! (or why it has none) attached to its connection for the services.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::material::SiteTls;
use crate::refusal::Refusal;
use crate::role::Identity;
use crate::verify::{DeferredClientAuth, OwnCert, check_client};

/// How long a connection may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes under way at once; more connections wait in the backlog.
const HANDSHAKES_AT_ONCE: usize = 64;

/// Who is at the other end of a connection: set once, after the handshake,
/// and seen by every call on it (tonic puts it in each request's
/// extensions).
#[derive(Clone, Debug)]
pub struct PeerInfo {
    /// The peer's address.
    pub addr: Option<SocketAddr>,
    /// Its verified identity, or why it has none.
    pub identity: Result<Identity, Refusal>,
}

/// One accepted connection, after a successful handshake.
#[derive(Debug)]
pub struct TlsConn {
    stream: TlsStream<TcpStream>,
    peer: PeerInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.peer.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// The connections `listener` accepts, each after a TLS 1.3 handshake with
/// `tls`'s certificate (re-read when its files change), for tonic's
/// `serve_with_incoming`. Handshakes run concurrently (a slow or silent
/// peer holds up no one) and give up after 10 s; a failed one is logged
/// and dropped. A client's certificate is checked after its handshake and
/// the outcome kept in its [`PeerInfo`]: the services answer a refused
/// client UNAUTHENTICATED with the reason ([`crate::peer_identity`]).
pub fn incoming(
    listener: TcpListener,
    tls: SiteTls,
) -> Result<impl Stream<Item = io::Result<TlsConn>>, crate::TrustError> {
    let mut config = rustls::ServerConfig::builder_with_provider(tls.provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(DeferredClientAuth(tls.clone())))
        .with_cert_resolver(Arc::new(OwnCert(tls.clone())));
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let (tx, rx) = tokio::sync::mpsc::channel(HANDSHAKES_AT_ONCE);
    let slots = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_AT_ONCE));
    tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, addr) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: pause, go on.
                        tracing::warn!("TLS listener: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = tx.closed() => return,
            };
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("TCP_NODELAY on a connection from {addr}: {e}");
            }
            let (acceptor, tls, tx) = (acceptor.clone(), tls.clone(), tx.clone());
            tokio::spawn(async move {
                let _slot = slot;
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let identity = check_client(&tls, stream.get_ref().1.peer_certificates());
                        if let Err(why) = &identity {
                            tracing::warn!(peer = %addr, "refusing the calls of a TLS client: {why}");
                        }
                        let peer = PeerInfo {
                            addr: Some(addr),
                            identity,
                        };
                        let _ = tx.send(Ok(TlsConn { stream, peer })).await;
                    }
                    // A TCP probe (a kubelet's tcpSocket check) connects and
                    // closes without a byte: not worth a line every few seconds.
                    Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        tracing::debug!(peer = %addr, "closed before a TLS handshake: {e}")
                    }
                    Ok(Err(e)) => tracing::info!(peer = %addr, "TLS handshake failed: {e}"),
                    Err(_) => tracing::info!(
                        peer = %addr,
                        "TLS handshake not finished within {HANDSHAKE_TIMEOUT:?}: dropped"
                    ),
                }
            });
        }
    });
    Ok(tokio_stream_from(rx))
}

fn tokio_stream_from<T>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl Stream<Item = T> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
