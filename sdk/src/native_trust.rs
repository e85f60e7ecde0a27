//! rustls client configurations (ring) from a [`TlsTrust`]: for QUIC and for
//! `https://`/`wss://`. No trust given means the system's root certificates.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::trust::TlsTrust;

fn transport(e: impl std::fmt::Display) -> Error {
    Error::Transport(e.to_string())
}

/// A client configuration for `versions`, verifying the server with `trust` (`None`: the
/// system's roots). No ALPN set.
pub(crate) fn client_config(
    trust: Option<&TlsTrust>,
    versions: &[&'static SupportedProtocolVersion],
) -> Result<rustls::ClientConfig, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(transport)?;
    let config = match trust {
        None => {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(Error::Transport(format!(
                    "no system root certificates found ({} errors); trust the server's certificate explicitly",
                    found.errors.len()
                )));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Some(TlsTrust::CertificatePem(pem)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(cert.map_err(|e| Error::Invalid(format!("certificate PEM: {e}")))?)
                    .map_err(transport)?;
            }
            if roots.is_empty() {
                return Err(Error::Invalid("no certificate in the PEM".into()));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Some(TlsTrust::Sha256Pin(hex)) => {
            let pin = parse_pin(hex)?;
            let verifier = PinVerifier { pin, algorithms: provider.signature_verification_algorithms };
            builder.dangerous().with_custom_certificate_verifier(Arc::new(verifier)).with_no_client_auth()
        }
    };
    Ok(config)
}

fn parse_pin(hex: &str) -> Result<[u8; 32], Error> {
    let digits: Vec<u8> = hex.bytes().filter(|b| *b != b':').collect();
    let bad = || Error::Invalid("a SHA-256 pin is 64 hex digits".into());
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut pin = [0u8; 32];
    for (i, pair) in digits.chunks(2).enumerate() {
        let text = std::str::from_utf8(pair).map_err(|_| bad())?;
        pin[i] = u8::from_str_radix(text, 16).map_err(|_| bad())?;
    }
    Ok(pin)
}

/// Accepts exactly one certificate, by the SHA-256 of its DER; handshake signatures are
/// still verified against it.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref())[..] == self.pin[..] {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
