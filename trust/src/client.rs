//! The client end: a connector for tonic channels that speaks mutual TLS
//! 1.3 with this part's certificate and checks the server's role.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::error::TrustError;
use crate::material::SiteTls;
use crate::role::{Identity, Role};
use crate::verify::{OwnCert, SiteServerVerifier};

/// Which servers a client accepts, by the identity their certificate
/// carries.
#[derive(Clone)]
pub struct Expect {
    what: String,
    accepts: Arc<dyn Fn(&Identity) -> bool + Send + Sync>,
}

impl fmt::Debug for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Expect {
    /// A server whose certificate has `role`.
    pub fn role(role: Role) -> Self {
        Self::matching(format!("a {role} certificate"), move |id| id.role == role)
    }

    /// A server whose identity passes `accepts`; `what` says in words what
    /// it accepts, for the error when a server does not pass.
    pub fn matching(
        what: impl Into<String>,
        accepts: impl Fn(&Identity) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            what: what.into(),
            accepts: Arc::new(accepts),
        }
    }

    pub(crate) fn check(&self, id: &Identity) -> Result<(), String> {
        if (self.accepts)(id) {
            Ok(())
        } else {
            Err(format!(
                "the server holds a {id} certificate; this client expects {}",
                self.what
            ))
        }
    }
}

/// Connects tonic channels over mutual TLS: use it with
/// `Endpoint::connect_with_connector_lazy` and an `http://host:port` URI.
#[derive(Clone)]
pub struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
}

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnector").finish_non_exhaustive()
    }
}

impl TlsConnector {
    /// A connector presenting `tls`'s certificate and accepting servers
    /// that `expect` accepts.
    pub fn new(tls: &SiteTls, expect: Expect) -> Result<Self, TrustError> {
        let mut config = rustls::ClientConfig::builder_with_provider(tls.provider().clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SiteServerVerifier {
                tls: tls.clone(),
                expect,
            }))
            .with_client_cert_resolver(Arc::new(OwnCert(tls.clone())));
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }
}

/// A connection failure, with the address it was for.
type ConnectError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.connector.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| format!("{uri}: no host"))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().ok_or_else(|| format!("{uri}: no port"))?;
            let tcp = TcpStream::connect((host.as_str(), port))
                .await
                .map_err(|e| format!("connect to {host}:{port}: {e}"))?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(host.clone())
                .map_err(|e| format!("{host}: not a host name or address: {e}"))?;
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {host}:{port}: {e}"))?;
            Ok(TokioIo::new(tls))
        })
    }
}
