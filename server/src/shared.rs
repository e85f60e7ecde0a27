//! Process-wide state every shard holds a reference to. Everything here is either
//! immutable, internally synchronized (storage, metrics), or a channel sender.

use std::sync::Arc;

use palaver_storage::{GroupCommitter, Store};

use crate::auth::TokenService;
use crate::blocking::Lanes;
use crate::config::Config;
use crate::mesh::{Mesh, Ticket};
use crate::metrics::Metrics;

/// Shared by all shards.
pub struct Shared {
    /// The resolved configuration.
    pub config: Config,
    /// Durable state.
    pub store: Arc<Store>,
    /// Group commit for durable writes.
    pub committer: GroupCommitter<Ticket>,
    /// Every shard's inbox.
    pub mesh: Mesh,
    /// Access-token signing and checking.
    pub tokens: TokenService,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Threads for blocking work, in lanes by kind.
    pub lanes: Lanes,
    /// The search index (`None` with `--disable-search`) and its indexer's inbox.
    pub search: Option<(Arc<palaver_search::SearchIndex>, palaver_search::IndexFeed)>,
    /// Where shared files' bytes go.
    pub files: crate::files::FileStore,
    /// Everyone's current presence (each part written by its home shard).
    pub presence: crate::mesh::PresenceTable,
    /// File uploads and downloads streaming now, held to the descriptor budget's share.
    pub file_transfers: Arc<crate::descriptors::Slots>,
    /// Client sockets open now, held to the descriptor budget's share.
    pub sockets: Arc<crate::descriptors::Slots>,
    /// Sign-in attempts per address, and wrong passwords per account and address.
    pub sign_ins: crate::auth::SignInThrottle,
    /// Throttles on invitations and direct rooms aimed at strangers, and room creation.
    pub spam: crate::spam_limits::SpamLimits,
    /// Open connections per client address.
    pub ip_connections: Arc<crate::io::limits::IpCounter>,
    /// Authenticated connections per user.
    pub user_connections: Arc<crate::io::limits::UserCounter>,
    /// The HTTP listener's TLS configuration with `--http-tls` (each shard runs its own
    /// handshakes with it); `None`: plain HTTP.
    pub http_tls: Option<monoio_rustls::TlsAcceptor>,
    /// Cluster mode: membership, ownership and the way to other nodes (`None`: alone).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Webhook registrations, and the deliveries events call for.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The VAPID key Web Push signs with (`None`: push is off, a cluster node without
    /// `--vapid-key-file`).
    pub vapid: Option<crate::web_push::vapid::VapidKey>,
    /// The development certificates browsers accept by hash for WebTransport (none with
    /// an operator's certificate).
    pub browser_certificates: Option<Arc<crate::browser_certificates::BrowserCertificates>>,
    /// The QUIC listener's UDP port (set once it is bound; WebTransport's URL uses it).
    pub quic_port: std::sync::atomic::AtomicU16,
    /// Who may open WebTransport sessions (the origins a WebSocket upgrade admits).
    pub webtransport_origins: crate::webtransport::connect::OriginPolicy,
    /// Whether any user has (or, since the start, had) a push subscription: without one
    /// no message queues a push fan-out. Read from the store at start, set when a
    /// subscription is written here, and by the outbound sender when one is replicated
    /// from another node.
    pub push_subscriptions_exist: Arc<std::sync::atomic::AtomicBool>,
}
