//! Choosing QUIC (PROTOCOL.md §7.3) for a client's event connection.
//!
//! Accounts and tokens still go over HTTP at the client's base URL; with
//! [`ClientOptions::quic`](crate::ClientOptions::quic) set, the chat connection itself is
//! a QUIC connection (ALPN `palaver/1`, TLS 1.3) to the server's QUIC address carrying
//! `palaver.v1.rkyv` frames, so the codec is always rkyv. Resume, exactly-once send and
//! reconnect are the same as over WebSocket: the sans-IO core does not know the transport.

/// Where the server's QUIC listener is and which certificate to trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicOptions {
    /// `host:port` of the listener (the `quic=` address of the server's startup line).
    pub addr: String,
    /// The TLS server name to check the certificate against; default: the host of
    /// `addr` (the development certificate is valid for `localhost`, `127.0.0.1` and
    /// `::1`).
    pub server_name: Option<String>,
    /// Which certificate to trust.
    pub trust: QuicTrust,
    /// How long the connection may go without hearing from the server before it is
    /// declared dead (QUIC idle timeout; keep-alives go out at a third of it). Unlike
    /// TCP, a server that crashed and is not back yet sends nothing, so this is how long
    /// noticing that takes. A restarted server answers the old connection with a
    /// stateless reset at once.
    pub idle_timeout_ms: u64,
}

/// The default [`QuicOptions::idle_timeout_ms`].
pub const DEFAULT_QUIC_IDLE_TIMEOUT_MS: u64 = 10_000;

/// The certificate a QUIC client accepts: the same type as
/// [`ClientOptions::trust`](crate::ClientOptions) for `https://`/`wss://`.
pub type QuicTrust = crate::trust::TlsTrust;

impl QuicOptions {
    /// QUIC to `addr` (`host:port`), trusting `trust`.
    pub fn new(addr: impl Into<String>, trust: QuicTrust) -> Self {
        QuicOptions {
            addr: addr.into(),
            server_name: None,
            trust,
            idle_timeout_ms: DEFAULT_QUIC_IDLE_TIMEOUT_MS,
        }
    }

    /// The server name to check: the configured one, or the host of `addr`.
    pub fn server_name(&self) -> String {
        if let Some(name) = &self.server_name {
            return name.clone();
        }
        let host = match self.addr.rsplit_once(':') {
            Some((host, _port)) => host,
            None => self.addr.as_str(),
        };
        host.trim_start_matches('[').trim_end_matches(']').to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_defaults_to_the_host() {
        let pin = QuicTrust::Sha256Pin("00".into());
        assert_eq!(QuicOptions::new("127.0.0.1:4433", pin.clone()).server_name(), "127.0.0.1");
        assert_eq!(QuicOptions::new("[::1]:4433", pin.clone()).server_name(), "::1");
        let named = QuicOptions { server_name: Some("chat.example".into()), ..QuicOptions::new("h:1", pin) };
        assert_eq!(named.server_name(), "chat.example");
    }
}
