use std::path::Path;

use palaver_sdk::{Client, ClientOptions, Credentials, TlsTrust};

async fn over_tls(url: &str, data_dir: &Path) -> Result<Client, palaver_sdk::Error> {
    // The server runs with `--http-tls`; its development certificate is DATA_DIR/tls/cert.pem.
    let pem = std::fs::read_to_string(data_dir.join("tls/cert.pem")).unwrap_or_default();
    let options = ClientOptions::default().trusting(TlsTrust::CertificatePem(pem));
    Client::connect_with(url, Credentials::register("tess", "password-123"), options).await
}
