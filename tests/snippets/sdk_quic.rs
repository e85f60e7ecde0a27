use std::path::Path;

use palaver_sdk::{Client, ClientOptions, Credentials, QuicOptions, QuicTrust};

async fn over_quic(url: &str, quic_addr: &str, data_dir: &Path) -> Result<Client, palaver_sdk::Error> {
    // Trust the server's development certificate (DATA_DIR/tls/cert.pem) …
    let pem = std::fs::read_to_string(data_dir.join("tls/cert.pem")).unwrap_or_default();
    let quic = QuicOptions::new(quic_addr, QuicTrust::CertificatePem(pem));
    // … or pin the SHA-256 the server prints at startup:
    // QuicTrust::Sha256Pin("5b1c…e09a".into())
    let options = ClientOptions::with_quic(quic);
    Client::connect_with(url, Credentials::register("quinn", "password-123"), options).await
}
