//! Start-up and shutdown: open storage, start the group committer and the shards, bind
//! the shared port on every shard, print the bound addresses, wait for a signal, drain.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use palaver_search::{IndexFeed, IndexOp, IndexerConfig, IndexerHandle, SearchIndex};
use palaver_storage::{CommitDone, GroupCommitter, Store, StoreOptions};

use crate::descriptors::DescriptorBudget;

use crate::auth::TokenService;
use crate::blocking::Lanes;
use crate::config::Config;
use crate::files::FileStore;
use crate::mesh::{Mesh, ShardMsg, Ticket};
use crate::metrics::Metrics;
use crate::shard::{self, Shard};
use crate::shared::Shared;
use crate::web_push::vapid::VapidKey;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The data directory or a secret file could not be prepared.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Storage refused to open (corruption, incompatible format).
    #[error("cannot open storage: {0}")]
    Storage(#[from] palaver_storage::StorageError),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
    /// The search index could not be opened.
    #[error("cannot open the search index: {0}")]
    Search(palaver_search::SearchError),
    /// The file store could not be opened.
    #[error("cannot open file storage: {0}")]
    Files(crate::files::FileError),
    /// The QUIC listener could not start (or the certificate could not be loaded).
    #[error(transparent)]
    Quic(#[from] crate::quic::QuicError),
    /// The development certificates for browsers could not be made or read.
    #[error(transparent)]
    BrowserCertificates(#[from] crate::browser_certificates::BrowserCertificateError),
    /// rustls refused the certificate and key for the HTTP listener's TLS.
    #[error("cannot serve HTTP over TLS: {0}")]
    HttpTls(rustls::Error),
    /// The cluster could not be joined (NATS unreachable, JetStream off).
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] crate::cluster::ClusterError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// The data directory's layout is of another version or could not be upgraded.
    #[error(transparent)]
    DataFormat(#[from] crate::data_dir::DataDirError),
    /// The control socket (for online backups) could not be opened.
    #[error("cannot open the control socket: {0}")]
    Control(crate::backup::BackupError),
}

/// Runs the server until SIGTERM or SIGINT, then drains and returns.
pub fn run(config: Config) -> Result<(), StartError> {
    let data_dir = config.data_dir.clone();
    crate::data_dir::prepare(&data_dir)?;
    let secret = jwt_secret(&config, &data_dir)?;
    let vapid = vapid_key(&config, &data_dir)?;
    let descriptors = DescriptorBudget::from_limit(crate::descriptors::raise_soft_limit(), config.shards);
    if descriptors.is_cramped() {
        tracing::warn!(
            limit = descriptors.limit,
            sockets = descriptors.sockets,
            "the descriptor limit (ulimit -n) leaves few sockets after storage's and search's reserve; raise it"
        );
    } else {
        tracing::info!(limit = descriptors.limit, sockets = descriptors.sockets, "descriptor budget");
    }
    let store = Arc::new(Store::open_with(
        &data_dir.join("db"),
        StoreOptions {
            durability: config.durability,
            disk_reserve_bytes: config.disk_reserve_bytes,
            max_cached_files: Some(descriptors.storage_cached_files),
        },
    )?);
    if config.verify_on_start {
        let started = std::time::Instant::now();
        let records = store.verify()?;
        tracing::info!(records, elapsed_ms = started.elapsed().as_millis() as u64, "storage verified");
    }
    let files_url = match &config.files_url {
        Some(url) => url.clone(),
        None => {
            let dir = std::fs::canonicalize(&data_dir)
                .map_err(|source| StartError::DataDir { path: data_dir.display().to_string(), source })?
                .join("files");
            format!("file://{}", dir.display())
        }
    };
    let (files, files_thread) = FileStore::start(&files_url).map_err(StartError::Files)?;
    let control = crate::backup::ControlSocket::start(
        store.clone(),
        crate::backup::Sources {
            data_dir: data_dir.clone(),
            files_dir: files_url.strip_prefix("file://").map(std::path::PathBuf::from),
            files_url: files_url.clone(),
        },
    )
    .map_err(StartError::Control)?;
    let (search, indexer) = if config.search { start_search(&data_dir, &store)? } else { (None, None) };
    let metrics = Arc::new(Metrics::new(config.shards));
    if let Some((_, feed)) = &search {
        let _ = metrics.search_backlog.set(feed.backlog().clone());
    }

    let index_feed = search.as_ref().map(|(_, feed)| feed.clone());
    let (mesh, inboxes, cluster) = match &config.cluster {
        None => {
            let (mesh, inboxes) = Mesh::new(config.shards);
            (mesh, inboxes, None)
        }
        Some(cluster_config) => {
            let (mesh, inboxes, gateway) = Mesh::with_gateway(config.shards);
            let (cluster, threads) = crate::cluster::start(
                cluster_config,
                mesh.clone(),
                gateway,
                store.clone(),
                index_feed.clone(),
            )?;
            (mesh, inboxes, Some((cluster, threads)))
        }
    };
    let webhooks = Arc::new(crate::webhooks::Webhooks::new(store.clone(), metrics.clone()));
    let push_subscriptions_exist =
        Arc::new(std::sync::atomic::AtomicBool::new(store.any_push_subscription().unwrap_or(true)));
    let committer = start_committer(
        store.clone(),
        mesh.clone(),
        metrics.clone(),
        index_feed,
        webhooks.clone(),
        push_subscriptions_exist.clone(),
    );
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let (lanes, lane_threads) = Lanes::start(cores);
    let listeners = bind_shared_port(config.http_addr, config.shards)?;
    let http_addr = listeners.first().and_then(|l| l.local_addr().ok()).unwrap_or(config.http_addr);
    // One TLS identity (loaded, or the development one generated once) for QUIC and,
    // with `--http-tls`, the HTTP listener; SIGHUP reloads it for both.
    let identity = crate::quic::tls::load_or_generate(
        config.tls_cert.as_deref(),
        config.tls_key.as_deref(),
        &config.data_dir,
    )?;
    // Browsers' WebTransport sessions get short-lived certificates they accept by hash,
    // unless the operator's certificate is one web PKI trusts.
    let browser_certificates = if identity.development {
        let dir = config.data_dir.join("tls").join("browser");
        Some(Arc::new(crate::browser_certificates::BrowserCertificates::open(
            &dir,
            crate::clock::now_ms() / 1000,
        )?))
    } else {
        None
    };
    let tls_resolver = Arc::new(
        crate::quic::tls::CertResolver::new(
            &identity,
            &crate::quic::tls::key_path(config.tls_key.as_deref(), &config.data_dir),
        )?
        .with_browser_certificates(browser_certificates.clone()),
    );
    let http_tls = if config.http_tls {
        Some(crate::conn::tls::acceptor(tls_resolver.clone()).map_err(StartError::HttpTls)?)
    } else {
        None
    };

    // Who may open WebTransport sessions: the pages that may open a WebSocket.
    let webtransport_origins = crate::webtransport::connect::OriginPolicy {
        allowed: config.cors_origins.clone(),
        http_port: http_addr.port(),
        http_tls: http_tls.is_some(),
    };
    let shared = Arc::new(Shared {
        presence: crate::mesh::PresenceTable::new(config.shards),
        sockets: crate::descriptors::Slots::new(descriptors.sockets),
        sign_ins: crate::auth::SignInThrottle::new(config.sign_ins_per_minute_per_ip),
        spam: crate::spam_limits::SpamLimits::default(),
        file_transfers: crate::descriptors::Slots::new(descriptors.file_transfers),
        ip_connections: crate::io::limits::ConnectionCounter::new(config.max_connections_per_ip),
        user_connections: crate::io::limits::ConnectionCounter::new(config.max_connections_per_user),
        files: files.clone(),
        http_tls,
        search,
        tokens: TokenService::new(&secret, config.access_token_ttl_secs),
        config,
        store,
        committer: committer.clone(),
        mesh: mesh.clone(),
        metrics,
        lanes,
        cluster: cluster.as_ref().map(|(cluster, _)| cluster.clone()),
        webhooks,
        vapid,
        push_subscriptions_exist,
        browser_certificates,
        quic_port: std::sync::atomic::AtomicU16::new(0),
        webtransport_origins,
    });
    crate::outbound::sender::start(shared.clone()).map_err(StartError::Thread)?;

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(StartError::Signals)?;

    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let mut threads = Vec::new();
    let (quic, quic_shared, quic_sockets) = crate::quic::prepare(
        &shared.config,
        &identity,
        tls_resolver.clone(),
        shared.ip_connections.clone(),
        shared.metrics.clone(),
    )?;
    shared.quic_port.store(quic.addr.port(), std::sync::atomic::Ordering::Relaxed);
    for (id, ((inbox, listener), quic_socket)) in
        inboxes.into_iter().zip(listeners).zip(quic_sockets).enumerate()
    {
        let shared = shared.clone();
        let quic_shared = quic_shared.clone();
        let core = cores.get(id % cores.len().max(1)).copied();
        let thread = std::thread::Builder::new()
            .name(format!("palaver-shard-{id}"))
            .spawn(move || {
                if let Some(core) = core {
                    core_affinity::set_for_current(core);
                }
                shared.metrics.register_shard_thread(id);
                run_shard(id, shared, inbox, listener, (quic_socket, quic_shared));
            })
            .map_err(StartError::Thread)?;
        threads.push(thread);
    }

    // Scripts parse this line: `http=` for plain HTTP (unchanged), `https=` with TLS.
    let scheme = if shared.http_tls.is_some() { "https" } else { "http" };
    println!("listening {scheme}={http_addr} quic={}", quic.addr);
    let _ = std::io::stdout().flush();
    let kind = if quic.development { "development (self-signed) " } else { "" };
    tracing::info!(
        "QUIC serves the {kind}certificate {} with SHA-256 fingerprint {}",
        quic.cert_path.display(),
        quic.fingerprint
    );
    // On stderr: stdout carries only the listening line, which scripts read and may close.
    eprintln!("quic certificate {} sha256={}", quic.cert_path.display(), quic.fingerprint);
    if shared.http_tls.is_some() {
        tracing::info!("HTTP and WebSocket are served over TLS (https://, wss://) with the same certificate");
        eprintln!("https certificate {} sha256={}", quic.cert_path.display(), quic.fingerprint);
    }
    tracing::info!(shards = threads.len(), data_dir = %data_dir.display(), "palaver is serving");

    for signal in signals.forever() {
        if signal == signal_hook::consts::SIGHUP {
            match tls_resolver.reload() {
                Ok(fingerprint) => tracing::info!(
                    "SIGHUP: reloaded the TLS certificate {} (sha256={fingerprint}) for new connections",
                    tls_resolver.cert_path().display()
                ),
                Err(e) => tracing::error!("SIGHUP: kept the current TLS certificate: {e}"),
            }
            continue;
        }
        tracing::info!(signal, "shutting down: draining connections and flushing storage");
        break;
    }
    mesh.broadcast(|| ShardMsg::Shutdown);
    for thread in threads {
        let _ = thread.join();
    }
    drop(shared);
    drop(lane_threads);
    control.stop();
    files.stop();
    let _ = files_thread.join();
    committer.shutdown();
    if let Some((_, threads)) = cluster {
        threads.stop();
    }
    // Last: the committer and the cluster's replica feed the index until they stop, and
    // what they queued is indexed before the final commit marks the index clean.
    if let Some(indexer) = indexer {
        indexer.shutdown();
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// One shard thread: build its runtime (io_uring when the kernel allows, else the
/// legacy epoll driver), then run the accept loop and the inbox until shutdown.
fn run_shard(
    id: usize,
    shared: Arc<Shared>,
    inbox: flume::Receiver<ShardMsg>,
    listener: std::net::TcpListener,
    (quic_socket, quic_shared): (std::net::UdpSocket, Arc<crate::quic::QuicShared>),
) {
    let main = async move {
        let listener = match monoio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(shard = id, "cannot adopt listener: {e}");
                return;
            }
        };
        let shard = Shard::new(id, shared);
        monoio::spawn(crate::conn::accept_loop(shard.clone(), listener));
        let quic = start_quic(&shard, quic_socket, quic_shared);
        monoio::spawn(crate::conn::socket::heartbeat(shard.clone()));
        monoio::spawn(crate::io::pacing::run(shard.write_pacer.clone()));
        monoio::spawn(shard::ticks(shard.clone()));
        if id == 0 {
            monoio::spawn(crate::conn::account_deletion::resume_departures(shard.clone()));
            monoio::spawn(crate::retention_sweeper::run(shard.clone()));
        }
        shard.run_inbox(inbox).await;
        // The sessions are closed: let their QUIC closes go out (bounded).
        if let Some(quic) = quic {
            quic.shutdown().await;
        }
    };
    if monoio::utils::detect_uring() {
        match monoio::RuntimeBuilder::<monoio::IoUringDriver>::new().with_entries(4096).enable_timer().build()
        {
            Ok(mut rt) => {
                if id == 0 {
                    tracing::info!("shards run on io_uring");
                }
                rt.block_on(main);
                return;
            }
            Err(e) => tracing::warn!(shard = id, "io_uring unavailable ({e}); using the legacy driver"),
        }
    } else if id == 0 {
        tracing::warn!("io_uring is not available on this kernel; shards use the legacy (epoll) driver");
    }
    match monoio::RuntimeBuilder::<monoio::LegacyDriver>::new().enable_timer().build() {
        Ok(mut rt) => rt.block_on(main),
        Err(e) => tracing::error!(shard = id, "cannot build runtime: {e}"),
    }
}

/// Starts the shard's QUIC endpoint on its socket: connections go to their application
/// by ALPN, datagrams other shards pass on arrive through the shard's inbox.
fn start_quic(
    shard: &std::rc::Rc<Shard>,
    socket: std::net::UdpSocket,
    quic_shared: Arc<crate::quic::QuicShared>,
) -> Option<std::rc::Rc<crate::quic::ShardEndpoint>> {
    let session_shard = shard.clone();
    let dispatch: crate::quic::endpoint::Dispatch =
        Box::new(move |connection, application| match application {
            crate::quic::Application::Palaver(codec) => {
                crate::conn::quic_session::serve(&session_shard, connection, codec);
            }
            crate::quic::Application::WebTransport => {
                crate::conn::webtransport_session::serve(&session_shard, connection);
            }
        });
    match crate::quic::ShardEndpoint::start(shard.clone(), socket, quic_shared, dispatch) {
        Ok(endpoint) => {
            *shard.quic_inlet.borrow_mut() = Some(crate::quic::endpoint::forwarder(&endpoint));
            Some(endpoint)
        }
        Err(e) => {
            tracing::error!(shard = shard.id, "cannot start the QUIC endpoint: {e}");
            None
        }
    }
}

/// The search index under `DATA_DIR/search` and its indexer thread. An index that is
/// missing, of another version, or left behind by a crash is rebuilt from the log in the
/// background (changes committed meanwhile queue behind the rebuild).
fn start_search(
    data_dir: &Path,
    store: &Arc<Store>,
) -> Result<(Option<SearchService>, Option<IndexerHandle>), StartError> {
    let (index, state) = SearchIndex::open(&data_dir.join("search")).map_err(StartError::Search)?;
    let indexer = index.start_indexer(IndexerConfig::default()).map_err(StartError::Search)?;
    if state.needs_rebuild() {
        let (reply, done) = flume::bounded(1);
        if indexer.send(IndexOp::Rebuild { store: store.clone(), reply }).is_ok() {
            tracing::info!(?state, "rebuilding the search index from the message log");
            let _ = std::thread::Builder::new().name("search-rebuild-wait".into()).spawn(move || match done
                .recv()
            {
                Ok(Ok(count)) => tracing::info!(messages = count, "search index rebuilt"),
                Ok(Err(e)) => tracing::error!("search index rebuild failed: {e}"),
                Err(_) => {}
            });
        }
    }
    let feed = indexer.sender();
    Ok((Some((Arc::new(index), feed)), Some(indexer)))
}

type SearchService = (Arc<SearchIndex>, IndexFeed);

/// Routes group-commit completions back to the owning shards, one message per shard, and
/// feeds stored and rewritten messages to the search indexer.
fn start_committer(
    store: Arc<Store>,
    mesh: Mesh,
    metrics: Arc<Metrics>,
    index_feed: Option<IndexFeed>,
    webhooks: Arc<crate::webhooks::Webhooks>,
    push_subscriptions_exist: Arc<std::sync::atomic::AtomicBool>,
) -> GroupCommitter<Ticket> {
    GroupCommitter::start(store, move |done: CommitDone<Ticket>| {
        if done.result.is_ok() && done.writes.iter().any(palaver_storage::Write::node_local) {
            webhooks.wake();
        }
        if done.result.is_ok()
            && done.writes.iter().any(|w| matches!(w, palaver_storage::Write::PutPushSubscription { .. }))
        {
            push_subscriptions_exist.store(true, Ordering::Release);
        }
        if let (Some(feed), Ok(())) = (&index_feed, &done.result) {
            for change in palaver_search::changes_of(done.writes) {
                let _ = feed.send(change);
            }
        }
        Metrics::inc(&metrics.commit_batches);
        metrics.commit_messages.fetch_add(done.tickets.len() as u64, Ordering::Relaxed);
        metrics.commit_duration.observe(done.duration);
        metrics.commit_group_size.observe_value(done.tickets.len() as f64);
        if done.result.is_ok() {
            for (ticket, submitted) in done.tickets.iter().zip(&done.submitted) {
                if matches!(
                    &ticket.work,
                    crate::mesh::CommitWork::Room { settle: palaver_core::owner::Settle::Message(_), .. }
                ) {
                    metrics.send_durable.observe(submitted.elapsed());
                }
            }
        }
        let mut by_shard: HashMap<usize, Vec<_>> = HashMap::new();
        for ticket in done.tickets {
            by_shard.entry(ticket.shard).or_default().push(ticket.work);
        }
        for (shard, works) in by_shard {
            mesh.send(shard, ShardMsg::Committed { works, result: done.result.clone() });
        }
    })
}

/// Binds `addr` once per shard with SO_REUSEPORT, so the kernel spreads connections
/// over the shards. With port 0 the first bind picks the port and the rest share it.
fn bind_shared_port(addr: SocketAddr, shards: usize) -> Result<Vec<std::net::TcpListener>, StartError> {
    if addr.port() != 0 {
        // SO_REUSEPORT would also let this process share the port with another running
        // server of the same user (the kernel would then split connections between the
        // two). A plain bind first makes a port that is in use an error instead.
        probe_free(addr).map_err(|source| StartError::Bind { addr, source })?;
    }
    let mut listeners = Vec::with_capacity(shards);
    let mut bound = addr;
    for _ in 0..shards {
        let listener = bind_reuseport(bound).map_err(|source| StartError::Bind { addr, source })?;
        bound = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

fn probe_free(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The configured secret, or one generated once into the data directory (0600).
fn jwt_secret(config: &Config, data_dir: &Path) -> Result<Vec<u8>, StartError> {
    if let Some(secret) = &config.jwt_secret {
        return Ok(secret.as_bytes().to_vec());
    }
    let path = data_dir.join("jwt-secret");
    let io_err = |source| StartError::DataDir { path: path.display().to_string(), source };
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => {
            tracing::warn!(
                "using the development JWT secret in {}; set --jwt-secret-file in production",
                path.display()
            );
            Ok(secret.trim().as_bytes().to_vec())
        }
        _ => {
            let secret = crate::ids::secret_token();
            write_private(&path, &secret).map_err(io_err)?;
            tracing::warn!(
                "generated a development JWT secret into {}; set --jwt-secret-file in production",
                path.display()
            );
            Ok(secret.into_bytes())
        }
    }
}

/// The VAPID key: the operator's file, or one generated once into the data directory —
/// except on a cluster node, where every node must sign with the same key, so push is
/// off without the operator's file.
fn vapid_key(config: &Config, data_dir: &Path) -> Result<Option<VapidKey>, StartError> {
    let (path, create) = match &config.push.vapid_key_file {
        Some(path) => (path.clone(), false),
        None if config.cluster.is_some() => {
            tracing::info!("Web Push is off: a cluster node pushes only with --vapid-key-file");
            return Ok(None);
        }
        None => (data_dir.join("vapid-key"), true),
    };
    let io_err = |source| StartError::DataDir { path: path.display().to_string(), source };
    let key = if create {
        VapidKey::load_or_create(&path).map_err(io_err)?
    } else {
        let text = std::fs::read_to_string(&path).map_err(io_err)?;
        VapidKey::from_base64url(&text)
            .map_err(|e| io_err(std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())))?
    };
    Ok(Some(key))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
