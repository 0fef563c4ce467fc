//! The rustls ends of the site's trust: this part's own certificate for
//! both ends, the server's deferred check of clients, and the client's
//! check of servers.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, verify_server_cert_signed_by_trust_anchor};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

use crate::client::Expect;
use crate::material::SiteTls;
use crate::refusal::Refusal;
use crate::role::Identity;

/// This part's certificate and key, as the directory holds them now.
#[derive(Debug)]
pub(crate) struct OwnCert(pub(crate) SiteTls);

impl ResolvesServerCert for OwnCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
}

impl ResolvesClientCert for OwnCert {
    fn resolve(
        &self,
        _root_hints: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The server's view of clients during the handshake: it asks every client
/// for a certificate and checks that the client holds its key, and leaves
/// the chain and the role to [`check_client`], after the handshake, so
/// that a refused client gets a gRPC status that says why.
#[derive(Debug)]
pub(crate) struct DeferredClientAuth(pub(crate) SiteTls);

impl ClientCertVerifier for DeferredClientAuth {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(&self.0)
    }
}

/// The identity a client's certificates prove, checked against the site CA
/// as the directory holds it now.
pub(crate) fn check_client(
    tls: &SiteTls,
    certs: Option<&[CertificateDer<'static>]>,
) -> Result<Identity, Refusal> {
    let Some((leaf, intermediates)) = certs.and_then(|c| c.split_first()) else {
        return Err(Refusal::NoCertificate);
    };
    let m = tls.material();
    if let Err(e) = m
        .client_chain
        .verify_client_cert(leaf, intermediates, UnixTime::now())
    {
        return Err(Refusal::from_chain_error(
            &e,
            leaf,
            &m.ca_subject,
            std::time::SystemTime::now(),
        ));
    }
    Identity::from_cert(leaf).map_err(Refusal::NoRole)
}

/// The client's view of a server: a chain to the site CA, and a role the
/// caller expects. Host names are not checked: the site's parts are
/// reached at pod IPs that change, and what a peer may do follows from its
/// role, which the CA vouches for.
#[derive(Debug)]
pub(crate) struct SiteServerVerifier {
    pub(crate) tls: SiteTls,
    pub(crate) expect: Expect,
}

impl ServerCertVerifier for SiteServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let m = self.tls.material();
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let algs = &self.tls.provider().signature_verification_algorithms;
        if let Err(e) = verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &m.roots,
            intermediates,
            now,
            algs.all,
        ) {
            let why = Refusal::from_chain_error(
                &e,
                end_entity,
                &m.ca_subject,
                std::time::SystemTime::now(),
            );
            return Err(rustls::Error::General(format!(
                "the server's certificate: {why}"
            )));
        }
        let identity = Identity::from_cert(end_entity)
            .map_err(|e| rustls::Error::General(format!("the server's certificate: {e}")))?;
        self.expect
            .check(&identity)
            .map_err(rustls::Error::General)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls12_refused()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_signature(&self.tls, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        schemes(&self.tls)
    }
}

/// Both ends allow TLS 1.3 only: a TLS 1.2 signature is never asked for.
fn tls12_refused() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::PeerIncompatible(
        rustls::PeerIncompatible::Tls13RequiredForQuic,
    ))
}

/// The handshake's proof that the peer holds its certificate's key.
fn tls13_signature(
    tls: &SiteTls,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &tls.provider().signature_verification_algorithms,
    )
}

fn schemes(tls: &SiteTls) -> Vec<SignatureScheme> {
    tls.provider()
        .signature_verification_algorithms
        .supported_schemes()
}
