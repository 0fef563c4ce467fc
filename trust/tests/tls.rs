//! The site's mutual TLS over real sockets: certificates made by `init_ca`
//! and `issue`, a listener from `incoming`, clients from `TlsConnector` and
//! from a bare rustls client (to present what strata's own client never
//! would: an expired certificate, none at all).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use strata_trust::{
    Expect, Identity, IssueRequest, PeerInfo, Refusal, Role, SiteTls, TlsConnector, incoming,
    init_ca, issue,
};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::server::Connected;
use tower_service::Service;

const DAY: Duration = Duration::from_secs(86_400);

struct Site {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Site {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_owned();
        init_ca(&root.join("ca"), "test", 30 * DAY).unwrap();
        Self { _tmp: tmp, root }
    }

    fn ca(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// Issues `role`/`name` into a directory of that name, valid as asked.
    fn issue_with(
        &self,
        dir: &str,
        role: Role,
        name: &str,
        from: SystemTime,
        until: SystemTime,
    ) -> PathBuf {
        let out = self.root.join(dir);
        let mut req = IssueRequest::new(Identity::new(role, name).unwrap(), DAY);
        req.not_before = from;
        req.not_after = until;
        issue(&self.ca(), &req, &out).unwrap();
        out
    }

    fn issue(&self, dir: &str, role: Role, name: &str) -> PathBuf {
        let now = SystemTime::now();
        self.issue_with(dir, role, name, now - Duration::from_secs(60), now + DAY)
    }
}

/// A listener on loopback; the accepted connections' peers.
async fn server(tls: SiteTls) -> (String, tokio::sync::mpsc::Receiver<PeerInfo>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut conns = Box::pin(incoming(listener, tls).unwrap());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        while let Some(Ok(conn)) = conns.next().await {
            let _ = tx.send(conn.connect_info()).await;
            // Keep the connection open for the client's sake.
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                drop(conn);
            });
        }
    });
    (addr, rx)
}

async fn connect(tls: &SiteTls, expect: Expect, addr: &str) -> Result<(), String> {
    let mut c = TlsConnector::new(tls, expect).unwrap();
    let uri: http::Uri = format!("http://{addr}").parse().unwrap();
    c.call(uri).await.map(|_| ()).map_err(|e| e.to_string())
}

async fn peer(rx: &mut tokio::sync::mpsc::Receiver<PeerInfo>) -> PeerInfo {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a connection")
        .unwrap()
}

/// A bare rustls client presenting `cert`/`key` (or nothing), trusting any
/// server: what an attacker's client can do.
async fn raw_client(addr: &str, cert_and_key: Option<(&Path, &Path)>) {
    #[derive(Debug)]
    struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)));
    let config = match cert_and_key {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_file(cert).unwrap()],
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = TcpStream::connect(addr).await.unwrap();
    let conn = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake itself succeeds; the calls are refused");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(conn);
    });
}

#[tokio::test]
async fn a_node_certificate_is_seen_as_that_node() {
    let site = Site::new();
    let server_tls = SiteTls::load(&site.issue("r1", Role::Replica, "")).unwrap();
    let node_tls = SiteTls::load(&site.issue("n1", Role::Node, "edge-1")).unwrap();
    assert_eq!(
        node_tls.identity(),
        Identity::new(Role::Node, "edge-1").unwrap()
    );
    let (addr, mut peers) = server(server_tls).await;
    connect(&node_tls, Expect::role(Role::Replica), &addr)
        .await
        .unwrap();
    let p = peer(&mut peers).await;
    assert_eq!(
        p.identity.unwrap(),
        Identity::new(Role::Node, "edge-1").unwrap()
    );
    assert!(p.addr.unwrap().ip().is_loopback());
}

#[tokio::test]
async fn another_ca_no_certificate_and_an_expired_one_are_refused_saying_which() {
    let site = Site::new();
    let other = Site::new();
    let server_tls = SiteTls::load(&site.issue("r1", Role::Replica, "")).unwrap();
    let (addr, mut peers) = server(server_tls).await;

    // Another site's CA.
    let foreign = other.issue("n1", Role::Node, "edge-1");
    raw_client(
        &addr,
        Some((&foreign.join("tls.crt"), &foreign.join("tls.key"))),
    )
    .await;
    match peer(&mut peers).await.identity {
        Err(r @ Refusal::OtherCa { .. }) => {
            let msg = r.to_string();
            assert!(msg.contains("not by this site's CA"), "{msg}");
        }
        other => panic!("another CA's certificate: {other:?}"),
    }

    // No certificate at all.
    raw_client(&addr, None).await;
    let refusal = peer(&mut peers).await.identity.unwrap_err();
    assert_eq!(refusal, Refusal::NoCertificate);
    assert!(refusal.to_string().contains("no client certificate"));

    // This site's CA, but expired yesterday.
    let now = SystemTime::now();
    let expired = site.issue_with("old", Role::Node, "edge-1", now - 3 * DAY, now - DAY);
    raw_client(
        &addr,
        Some((&expired.join("tls.crt"), &expired.join("tls.key"))),
    )
    .await;
    match peer(&mut peers).await.identity {
        Err(r @ Refusal::Expired { .. }) => assert!(r.to_string().contains("expired at"), "{r}"),
        other => panic!("an expired certificate: {other:?}"),
    }
    // And strata will not even start with it.
    let e = SiteTls::load(&expired).unwrap_err().to_string();
    assert!(e.contains("tls.crt") && e.contains("expired at"), "{e}");
}

#[tokio::test]
async fn a_client_refuses_a_server_of_the_wrong_role_or_another_ca() {
    let site = Site::new();
    let node_server = SiteTls::load(&site.issue("n2", Role::Node, "edge-2")).unwrap();
    let client = SiteTls::load(&site.issue("a", Role::Admin, "ops")).unwrap();
    let (addr, _peers) = server(node_server).await;
    let e = connect(&client, Expect::role(Role::Replica), &addr)
        .await
        .unwrap_err();
    assert!(
        e.contains("node edge-2") && e.contains("expects a replica"),
        "{e}"
    );

    let other = Site::new();
    let foreign_server = SiteTls::load(&other.issue("r", Role::Replica, "")).unwrap();
    let (addr, _peers) = server(foreign_server).await;
    let e = connect(&client, Expect::role(Role::Replica), &addr)
        .await
        .unwrap_err();
    assert!(e.contains("not by this site's CA"), "{e}");
}

#[tokio::test]
async fn rotated_certificates_are_used_without_a_restart() {
    let site = Site::new();
    let server_tls = SiteTls::load(&site.issue("r1", Role::Replica, "")).unwrap();
    let (addr, mut peers) = server(server_tls).await;
    let dir = site.issue("n1", Role::Node, "edge-1");
    let client = SiteTls::load(&dir).unwrap();
    connect(&client, Expect::role(Role::Replica), &addr)
        .await
        .unwrap();
    assert_eq!(peer(&mut peers).await.identity.unwrap().name, "edge-1");

    // Rotate: a new certificate and key written in place, as a Secret
    // update or cert-manager renewal does.
    let fresh = site.issue("n1-new", Role::Node, "edge-1b");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for f in ["tls.key", "tls.crt"] {
        std::fs::copy(fresh.join(f), dir.join(f)).unwrap();
    }
    connect(&client, Expect::role(Role::Replica), &addr)
        .await
        .unwrap();
    assert_eq!(peer(&mut peers).await.identity.unwrap().name, "edge-1b");
    assert_eq!(client.identity().name, "edge-1b");

    // A half-written rotation keeps the working certificate.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(dir.join("tls.key"), "not a key").unwrap();
    connect(&client, Expect::role(Role::Replica), &addr)
        .await
        .unwrap();
    assert_eq!(peer(&mut peers).await.identity.unwrap().name, "edge-1b");
}

#[test]
fn nothing_is_overwritten_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let site = Site::new();
    let e = init_ca(&site.ca(), "again", DAY).unwrap_err().to_string();
    assert!(e.contains("exists already"), "{e}");
    let dir = site.issue("n1", Role::Node, "edge-1");
    let req = IssueRequest::new(Identity::new(Role::Node, "edge-1").unwrap(), DAY);
    let e = issue(&site.ca(), &req, &dir).unwrap_err().to_string();
    assert!(e.contains("exists already"), "{e}");
    for key in [site.ca().join("ca.key"), dir.join("tls.key")] {
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", key.display());
    }
}
