//! The `palaver-cluster` thread: async-nats on a current-thread tokio runtime. It keeps
//! the membership, publishes heartbeats, forwards commands and answers forwarded ones,
//! carries room events and presence between nodes, publishes this node's writes to the
//! log and reads everyone's back for the replica thread.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::DeliverPolicy, stream};
use futures_util::StreamExt as _;
use palaver_core::log_fence::LogFence;
use palaver_core::log_trim::{self, TrimPolicy};
use palaver_core::{Heartbeat, Membership, MembershipChange, Standing};
use palaver_protocol::{Codec, ErrorBody, ErrorCode, ReplyBody, UserId};
use palaver_search::IndexFeed;
use palaver_storage::Store;

use super::replica::{LogPublisher, run_replica};
use super::wire::{
    self, Beat, ForwardedCommand, ForwardedReply, LogRecord, PresenceChange, RoomEventBody, RoomEventEnvelope,
};
use super::{
    Cluster, ClusterConfig, ClusterError, DEAD_AFTER_MS, FORWARD_TIMEOUT_MS, HEARTBEAT_MS, Ownership,
    SETTLE_MS,
};
use crate::mesh::{Ephemeral, LazyFrames, Mesh, Origin, RemoteRoomEvent, Reply, RoomAction, ShardMsg};

/// Work for the cluster thread from other threads.
pub enum ServiceCmd {
    /// Send a command to the node that owns its room.
    Forward { node: String, hub: usize, origin: Origin, action: RoomAction },
    /// Publish a log record and report when the log has it.
    Publish {
        subject: String,
        payload: Vec<u8>,
        /// The position of the subject's last record it must follow (0: the subject
        /// must be empty, as for a username claim); `None`: unconditional.
        expected: Option<u64>,
        /// Answered with the record's position in the log.
        done: flume::Sender<Result<u64, PublishFailure>>,
    },
    /// Read the position of a subject's last record in the log (0: none).
    LastOnSubject { subject: String, done: flume::Sender<Result<u64, String>> },
    /// Read every record of a subject, in log order, up to its last one now.
    ReadSubject { subject: String, done: flume::Sender<Result<Vec<(u64, bytes::Bytes)>, String>> },
    /// This node caught up under `owners`.
    Settled { owners: Vec<String> },
    /// This node's replica caught up at start: it may own rooms.
    Ready,
    /// This node is about to trim the log before `point` (announced in its heartbeats).
    TrimAnnounced { point: u64 },
    /// The trim is over (`Some`: the log now starts at that position).
    Trimmed { point: Option<u64> },
    /// The NATS connection was lost (`false`) or is back (`true`).
    Broker { connected: bool },
    /// Say goodbye and stop.
    Stop,
}

/// Why the log did not take a record.
#[derive(Debug)]
pub enum PublishFailure {
    /// The subject's last record was not the expected one: nothing was written.
    WrongLast,
    /// No acknowledgement (timeout, lost connection, broker error): the log may or may
    /// not hold it.
    Unknown(String),
}

/// The cluster's threads, to stop at shutdown.
pub struct ClusterThreads {
    cluster: Arc<Cluster>,
    service: Option<std::thread::JoinHandle<()>>,
}

impl ClusterThreads {
    /// Announces the departure (other nodes take this node's rooms at once) and stops.
    pub fn stop(mut self) {
        let _ = self.cluster.to_service.send(ServiceCmd::Stop);
        if let Some(thread) = self.service.take() {
            let _ = thread.join();
        }
    }
}

/// Connects to NATS, makes sure the log stream exists, starts the cluster and replica
/// threads, and installs the log publisher on the store.
pub fn start(
    config: &ClusterConfig,
    mesh: Mesh,
    gateway: flume::Receiver<ShardMsg>,
    store: Arc<Store>,
    index_feed: Option<IndexFeed>,
) -> Result<(Arc<Cluster>, ClusterThreads), ClusterError> {
    let (to_service, commands) = flume::unbounded();
    let position = store.log_position()?;
    let cluster = Arc::new(Cluster {
        node: config.node_id.clone(),
        incarnation: rand::random::<u64>() | 1,
        ownership: std::sync::RwLock::new(Ownership::default()),
        to_service: to_service.clone(),
        live_nodes: AtomicU64::new(0),
        serving: std::sync::atomic::AtomicBool::new(false),
        forwarded: AtomicU64::new(0),
        applied_records: AtomicU64::new(0),
        log_position: Arc::new(AtomicU64::new(position)),
        own_applied: std::sync::Mutex::default(),
        ownership_conflicts: AtomicU64::new(0),
        own_abandoned: std::sync::Mutex::default(),
        next_serial: AtomicU64::new(1),
        fence: std::sync::Mutex::new(LogFence::new(DEAD_AFTER_MS)),
        started: Instant::now(),
        fenced_writes: AtomicU64::new(0),
        claims: AtomicU64::new(0),
        trimmed_before: AtomicU64::new(0),
        diverged: std::sync::Mutex::default(),
        diverged_any: std::sync::atomic::AtomicBool::new(false),
        rebuilt_rooms: AtomicU64::new(0),
        own_pairs: std::sync::Mutex::default(),
    });
    let (records_tx, records) = flume::bounded::<(u64, bytes::Bytes)>(4_096);
    {
        let (store, mesh, cluster) = (store.clone(), mesh.clone(), cluster.clone());
        std::thread::Builder::new()
            .name("palaver-replica".into())
            .spawn(move || run_replica(records, store, mesh, cluster, index_feed))
            .map_err(ClusterError::Thread)?;
    }
    let (started_tx, started) = flume::bounded(1);
    let service = {
        let (config, cluster) = (config.clone(), cluster.clone());
        std::thread::Builder::new()
            .name("palaver-cluster".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = started_tx.send(Err(format!("cannot build the cluster runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let links = match Links::connect(&config, position, to_service.clone()).await {
                        Ok(links) => links,
                        Err(e) => {
                            let _ = started_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = started_tx.send(Ok(()));
                    let Links {
                        client,
                        js,
                        log,
                        beats,
                        departures,
                        commands: requests,
                        events,
                        presence,
                        notices,
                        start_position,
                    } = links;
                    let subs = Subscriptions { beats, departures, requests, events, presence, notices };
                    let service = Service::new(cluster, mesh, client, js, to_service, config.log_keep);
                    tokio::spawn(read_log(log.clone(), start_position, records_tx));
                    service.run(subs, log, commands, gateway).await;
                });
            })
            .map_err(ClusterError::Thread)?
    };
    match started.recv_timeout(STREAM_OPEN_TIMEOUT + Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(ClusterError::Nats(e)),
        Err(_) => return Err(ClusterError::Nats(format!("no answer from NATS at {}", config.nats_url))),
    }
    store.set_replicator(Arc::new(LogPublisher {
        cluster: cluster.clone(),
        to_service: cluster.to_service.clone(),
    }));
    tracing::info!(node = %cluster.node, nats = %config.nats_url, position, "joined the cluster");
    Ok((cluster.clone(), ClusterThreads { cluster, service: Some(service) }))
}

/// The NATS client, the log stream, and this node's subscriptions.
struct Links {
    client: async_nats::Client,
    js: jetstream::Context,
    log: stream::Stream,
    beats: async_nats::Subscriber,
    departures: async_nats::Subscriber,
    commands: async_nats::Subscriber,
    events: async_nats::Subscriber,
    presence: async_nats::Subscriber,
    notices: async_nats::Subscriber,
    start_position: u64,
}

impl Links {
    async fn connect(
        config: &ClusterConfig,
        start_position: u64,
        to_service: flume::Sender<ServiceCmd>,
    ) -> Result<Links, String> {
        let options = async_nats::ConnectOptions::new()
            .event_callback(move |event| {
                let to_service = to_service.clone();
                async move {
                    let connected = match event {
                        async_nats::Event::Connected => true,
                        async_nats::Event::Disconnected => false,
                        _ => return,
                    };
                    let _ = to_service.send(ServiceCmd::Broker { connected });
                }
            })
            .name(format!("palaver {}", config.node_id))
            .connection_timeout(Duration::from_secs(5))
            // The client's default backs off to 4 s between attempts: a broker back after a
            // few seconds would be found only that late. A quarter second at most.
            .reconnect_delay_callback(|attempts| {
                let exponent = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
                Duration::from_millis(2u64.saturating_pow(exponent).min(RECONNECT_MAX_DELAY_MS))
            });
        let servers: Vec<&str> = config.nats_url.split(',').map(str::trim).collect();
        let client = options
            .connect(servers)
            .await
            .map_err(|e| format!("cannot connect to NATS at {}: {e}", config.nats_url))?;
        let mut js = jetstream::new(client.clone());
        // A healthy stream acknowledges in milliseconds; past this, the outcome is
        // unknown (the client resends with the same cid) rather than holding every write
        // behind it while NATS elects a new stream leader.
        js.set_timeout(JETSTREAM_TIMEOUT);
        // A NATS cluster that has just started elects its JetStream leaders first: until
        // then it answers "temporarily unavailable". Keep asking for a while.
        let deadline = Instant::now() + STREAM_OPEN_TIMEOUT;
        let log = loop {
            let opened = js
                .get_or_create_stream(stream::Config {
                    name: wire::LOG_STREAM.to_owned(),
                    subjects: vec![format!("{}.log.>", wire::PREFIX)],
                    storage: stream::StorageType::File,
                    num_replicas: config.log_replicas,
                    ..Default::default()
                })
                .await;
            match opened {
                Ok(log) => break log,
                Err(e) if Instant::now() < deadline => {
                    tracing::info!("waiting for JetStream to open the stream {}: {e}", wire::LOG_STREAM);
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => {
                    return Err(format!(
                        "cannot open the JetStream stream {} (is JetStream enabled?): {e}",
                        wire::LOG_STREAM
                    ));
                }
            }
        };
        // A replica behind the point the log was trimmed at cannot catch up from the log.
        let first = match log.get_last_raw_message_by_subject(wire::LOG_TRIMS).await {
            Ok(marker) => {
                serde_json::from_slice::<LogRecord>(&marker.payload).map_or(0, |r| r.trimmed_before)
            }
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => 0,
            Err(e) => return Err(format!("cannot read the cluster log's trim marker: {e}")),
        };
        if !log_trim::can_follow(start_position, first) {
            return Err(format!(
                "this node's store has applied the cluster log up to position {start_position}, but the log now \
                 starts at {first} (older records were trimmed once every live node had them): give this node \
                 a copy of another node's store (`palaver backup` on a running node, `palaver restore` into \
                 this node's empty data directory) and start it again"
            ));
        }
        let sub = |subject: String| {
            let client = client.clone();
            async move {
                client
                    .subscribe(subject.clone())
                    .await
                    .map_err(|e| format!("cannot subscribe to {subject}: {e}"))
            }
        };
        Ok(Links {
            beats: sub(wire::HEARTBEATS.into()).await?,
            departures: sub(wire::DEPARTURES.into()).await?,
            commands: sub(wire::commands(&config.node_id)).await?,
            events: sub(format!("{}.ev.>", wire::PREFIX)).await?,
            presence: sub(wire::PRESENCE.into()).await?,
            notices: sub(wire::notices(&config.node_id)).await?,
            client,
            js,
            log,
            start_position,
        })
    }
}

struct Subscriptions {
    beats: async_nats::Subscriber,
    departures: async_nats::Subscriber,
    requests: async_nats::Subscriber,
    events: async_nats::Subscriber,
    presence: async_nats::Subscriber,
    notices: async_nats::Subscriber,
}

/// How long a node listens to heartbeats, after it connected or resumed from a freeze,
/// before its ownership view counts: long enough to hear every live node.
const LISTEN_MS: u64 = 3 * HEARTBEAT_MS;
/// A gap this long between two ticks of the cluster thread (which ticks every 50 ms)
/// means the process was frozen long enough that the others may have declared it dead
/// (they do after `DEAD_AFTER_MS` without a heartbeat, sent every `HEARTBEAT_MS`): it
/// listens again before owning rooms. Shorter freezes cannot have moved a room.
const MAX_TICK_GAP_MS: u64 = DEAD_AFTER_MS - 2 * HEARTBEAT_MS;
/// How long each tick vouches for this node's leases (see `LogFence::vouch`): a write
/// after a freeze this long re-validates its room first.
const VOUCH_MS: u64 = MAX_TICK_GAP_MS;

/// Longest the reading of one subject for a rebuild may take.
const READ_SUBJECT_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the trimmer considers trimming the log.
const TRIM_CHECK_EVERY: Duration = Duration::from_secs(10);
/// How long a trim point is announced before the trim: every node hears it (in four
/// heartbeats) and gives up the leases it would break.
const TRIM_ANNOUNCE_FOR: Duration = Duration::from_millis(4 * HEARTBEAT_MS);

/// How long a JetStream request (an append's acknowledgement, a lookup) may take.
const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a starting node waits for JetStream to open the log stream (a NATS cluster
/// starting at the same moment elects its leaders first).
const STREAM_OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// The longest wait between two attempts to reach NATS again.
const RECONNECT_MAX_DELAY_MS: u64 = 250;

/// How long the log reader waits for a record before it checks that the log holds none
/// it has not delivered.
const READER_QUIET_CHECK: Duration = Duration::from_secs(1);

/// How long opening a reader of the log may take before it is tried again.
const READER_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads the whole log from after `position`, in order, into the replica thread. An
/// ordered consumer: no acknowledgements, recreated by the client after any gap, and
/// by this reader when it falls silent while the log grows (after a broker restart).
async fn read_log(log: stream::Stream, mut position: u64, records: flume::Sender<(u64, bytes::Bytes)>) {
    loop {
        let deliver_policy = if position == 0 {
            DeliverPolicy::All
        } else {
            DeliverPolicy::ByStartSequence { start_sequence: position + 1 }
        };
        let config = jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("{}.log.>", wire::PREFIX),
            deliver_policy,
            ..Default::default()
        };
        // While a NATS cluster elects leaders, creating a consumer can wait without end:
        // each attempt is bounded, and retried.
        let opened = tokio::time::timeout(READER_OPEN_TIMEOUT, async {
            let consumer = log.create_consumer(config).await.map_err(|e| e.to_string())?;
            consumer.messages().await.map_err(|e| e.to_string())
        })
        .await;
        let mut messages = match opened {
            Ok(Ok(messages)) => messages,
            Ok(Err(e)) => {
                tracing::warn!("cannot read the cluster log: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(_) => {
                tracing::warn!("no answer opening a reader of the cluster log; retrying");
                continue;
            }
        };
        loop {
            let message = match tokio::time::timeout(READER_QUIET_CHECK, messages.next()).await {
                Ok(Some(message)) => message,
                Ok(None) => break,
                // A consumer the broker lost (a NATS restart drops it) delivers nothing and
                // reports nothing: when the log holds records it has not delivered, it is
                // replaced.
                Err(_) => match log.get_info().await {
                    Ok(info) if info.state.last_sequence > position => {
                        tracing::warn!(
                            position,
                            last = info.state.last_sequence,
                            "the cluster log reader stalled behind the log; reading it anew"
                        );
                        break;
                    }
                    _ => continue,
                },
            };
            match message {
                Ok(message) => {
                    let Ok(info) = message.info() else { continue };
                    let at = info.stream_sequence;
                    if at <= position {
                        continue;
                    }
                    if records.send_async((at, message.message.payload.clone())).await.is_err() {
                        return;
                    }
                    position = at;
                }
                Err(e) => {
                    tracing::warn!("reading the cluster log: {e}");
                    break;
                }
            }
        }
        // The consumer ended: start a new one after what the replica was given.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every record of `subject`, in log order, up to the subject's last record when asked.
async fn read_subject(log: &stream::Stream, subject: String) -> Result<Vec<(u64, bytes::Bytes)>, String> {
    let last = match log.get_last_raw_message_by_subject(&subject).await {
        Ok(message) => message.sequence,
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let config = jetstream::consumer::pull::OrderedConfig {
        filter_subject: subject,
        deliver_policy: DeliverPolicy::All,
        ..Default::default()
    };
    let consumer = log.create_consumer(config).await.map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    let mut records = Vec::new();
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| e.to_string())?;
        let at = message.info().map_err(|e| e.to_string())?.stream_sequence;
        records.push((at, message.message.payload.clone()));
        if at >= last {
            break;
        }
    }
    Ok(records)
}

/// Waits until the replica has applied everything the log held when asked.
async fn catch_up(log: &stream::Stream, position: &AtomicU64) {
    let target = loop {
        match log.get_info().await {
            Ok(info) => break info.state.last_sequence,
            Err(e) => {
                tracing::warn!("cannot read the cluster log's state: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    while position.load(Ordering::Acquire) < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn unavailable(message: &str) -> ReplyBody {
    ReplyBody::Err(ErrorBody::new(ErrorCode::Unavailable, message))
}

struct Service {
    cluster: Arc<Cluster>,
    mesh: Mesh,
    gateway_index: usize,
    client: async_nats::Client,
    js: jetstream::Context,
    to_service: flume::Sender<ServiceCmd>,
    membership: Membership,
    /// Bumped when the NATS connection is lost: log appends awaiting acknowledgement
    /// learn their outcome is unknown.
    connection_lost: tokio::sync::watch::Sender<u64>,
    /// What each live node says its replica has applied of the log.
    applied_by: HashMap<String, u64>,
    /// The point this node announced it will trim the log before (0: none).
    trim_before: u64,
    /// A trim is under way (announced, or being carried out).
    trimming: bool,
    /// When this node last considered trimming.
    trim_checked: Instant,
    /// Records of the log to keep (`--cluster-log-keep`).
    log_keep: u64,
    /// Whether this node's view of the cluster lets it own rooms (see [`Standing`]).
    standing: Standing,
    serving: bool,
    ready: bool,
    started: Instant,
    last_beat: Option<Instant>,
    /// Forwarded requests being served here: token → NATS reply subject.
    pending: HashMap<u64, (async_nats::Subject, Instant)>,
    next_token: u64,
    /// Users with at least one session on this node.
    local_up: HashSet<UserId>,
    /// Users with sessions on each other node.
    remote_up: HashMap<String, HashSet<UserId>>,
    /// Each other node's stand-in shard index in presence books.
    node_slots: HashMap<String, usize>,
}

impl Service {
    fn new(
        cluster: Arc<Cluster>,
        mesh: Mesh,
        client: async_nats::Client,
        js: jetstream::Context,
        to_service: flume::Sender<ServiceCmd>,
        log_keep: u64,
    ) -> Self {
        let gateway_index = mesh.gateway().unwrap_or(mesh.len());
        Self {
            membership: Membership::new(cluster.node.clone(), DEAD_AFTER_MS),
            standing: Standing::new(LISTEN_MS, MAX_TICK_GAP_MS),
            connection_lost: tokio::sync::watch::Sender::new(0),
            applied_by: HashMap::new(),
            trim_before: 0,
            trimming: false,
            trim_checked: Instant::now(),
            log_keep,
            serving: false,
            cluster,
            mesh,
            gateway_index,
            client,
            js,
            to_service,
            ready: false,
            started: Instant::now(),
            last_beat: None,
            pending: HashMap::new(),
            next_token: 1,
            local_up: HashSet::new(),
            remote_up: HashMap::new(),
            node_slots: HashMap::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn run(
        mut self,
        mut subs: Subscriptions,
        log: stream::Stream,
        commands: flume::Receiver<ServiceCmd>,
        gateway: flume::Receiver<ShardMsg>,
    ) {
        // Ready once the replica holds everything the log held at start.
        {
            let (log, position, to_service) =
                (log.clone(), self.cluster.log_position.clone(), self.to_service.clone());
            tokio::spawn(async move {
                catch_up(&log, &position).await;
                let _ = to_service.send(ServiceCmd::Ready);
            });
        }
        let mut tick = tokio::time::interval(Duration::from_millis(50));
        loop {
            tokio::select! {
                Some(message) = subs.beats.next() => {
                    if let Ok(beat) = serde_json::from_slice::<Beat>(&message.payload)
                        && beat.node != self.cluster.node
                    {
                        self.applied_by.insert(beat.node.clone(), beat.applied);
                        if beat.trim_before > 0 {
                            self.cluster.fence().forget_before(beat.trim_before);
                        }
                        let heartbeat = Heartbeat { node: beat.node, incarnation: beat.incarnation, ready: beat.ready };
                        let change = self.membership.observe(&heartbeat, self.now_ms());
                        self.on_change(change, &log);
                    }
                }
                Some(message) = subs.departures.next() => {
                    if let Ok(beat) = serde_json::from_slice::<Beat>(&message.payload)
                        && beat.node != self.cluster.node
                    {
                        let change = self.membership.depart(&beat.node, beat.incarnation);
                        self.on_change(change, &log);
                    }
                }
                Some(message) = subs.requests.next() => self.serve_forwarded(message),
                Some(message) = subs.events.next() => self.on_room_event(&message.payload),
                Some(message) = subs.presence.next() => self.on_presence(&message.payload),
                Some(message) = subs.notices.next() => self.on_notice(&message.payload),
                Ok(msg) = gateway.recv_async() => self.on_gateway(msg).await,
                Ok(cmd) = commands.recv_async() => {
                    if !self.on_command(cmd, &log).await {
                        break;
                    }
                }
                _ = tick.tick() => self.on_tick(&log).await,
            }
        }
    }

    /// Publishes this node's heartbeat and counts itself live.
    async fn beat(&mut self) -> MembershipChange {
        let beat = Beat {
            node: self.cluster.node.clone(),
            incarnation: self.cluster.incarnation,
            ready: self.ready,
            applied: self.cluster.seen(),
            trim_before: self.trim_before,
        };
        if let Ok(payload) = serde_json::to_vec(&beat) {
            let _ = self.client.publish(wire::HEARTBEATS, payload.into()).await;
        }
        self.last_beat = Some(Instant::now());
        let me = Heartbeat { node: beat.node, incarnation: beat.incarnation, ready: beat.ready };
        let now = self.now_ms();
        self.membership.observe(&me, now)
    }

    async fn on_tick(&mut self, log: &stream::Stream) {
        if self.last_beat.is_none_or(|at| at.elapsed() >= Duration::from_millis(HEARTBEAT_MS)) {
            let change = self.beat().await;
            self.on_change(change, log);
        }
        let change = self.membership.expire(self.now_ms());
        self.on_change(change, log);
        let now = self.cluster.now_ms();
        let serving = self.standing.tick(now);
        if serving {
            self.cluster.fence().vouch(now + VOUCH_MS);
        }
        self.review_standing(serving, log);
        self.consider_trimming(log);
        // Requests a shard never answered (it would be a bug) do not pile up.
        self.pending.retain(|_, (_, since)| since.elapsed() < Duration::from_secs(60));
    }

    /// The live set changed: presence of departed nodes ends, newcomers learn who is
    /// online here, and when owners changed the shards let go of rooms they lost and
    /// this node catches up before serving rooms it gained.
    fn on_change(&mut self, change: MembershipChange, log: &stream::Stream) {
        self.cluster.live_nodes.store(self.membership.live().len() as u64, Ordering::Relaxed);
        for node in &change.left {
            tracing::info!(node = %node, "cluster node left");
            let slot = self.slot(node);
            for user in self.remote_up.remove(node).unwrap_or_default() {
                self.mesh.send(self.mesh.home(&user), ShardMsg::SessionDown { user, shard: slot });
            }
        }
        for node in &change.joined {
            if *node != self.cluster.node {
                tracing::info!(node = %node, "cluster node joined");
                for user in self.local_up.clone() {
                    self.publish_presence(user, true);
                }
            }
        }
        if change.owners_changed && self.serving {
            self.take_owners(log);
        }
    }

    /// Adopts the membership's owner set: shards let go of the rooms this node lost, and
    /// it catches up with the log before serving the rooms it gained.
    fn take_owners(&mut self, log: &stream::Stream) {
        let owners = self.membership.owners();
        tracing::info!(?owners, "room owners changed");
        self.cluster.set_owners(owners.clone());
        self.mesh.broadcast(|| ShardMsg::ClusterView);
        let (log, position, to_service) =
            (log.clone(), self.cluster.log_position.clone(), self.to_service.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(SETTLE_MS)).await;
            catch_up(&log, &position).await;
            let _ = to_service.send(ServiceCmd::Settled { owners });
        });
    }

    /// The trimmer (the live node with the lowest id) trims the log every so often: it
    /// announces the point in its heartbeats, waits until every node has heard it (they
    /// give up leases the trim would break), then removes the records before it on every
    /// subject but the usernames' (see `palaver_core::log_trim`).
    fn consider_trimming(&mut self, log: &stream::Stream) {
        let live = self.membership.live();
        if self.log_keep == 0
            || self.trimming
            || !self.serving
            || self.trim_checked.elapsed() < TRIM_CHECK_EVERY
            || !log_trim::is_trimmer(&self.cluster.node, &live)
        {
            return;
        }
        self.trim_checked = Instant::now();
        let me = self.cluster.seen();
        let slowest = live
            .iter()
            .map(|node| {
                if *node == self.cluster.node { me } else { self.applied_by.get(node).copied().unwrap_or(0) }
            })
            .min()
            .unwrap_or(0);
        let policy = TrimPolicy { keep: self.log_keep, step: (self.log_keep / 10).clamp(1, 10_000) };
        self.trimming = true;
        let (log, js, to_service, node) =
            (log.clone(), self.js.clone(), self.to_service.clone(), self.cluster.node.clone());
        tokio::spawn(async move {
            let point = match log.get_info().await {
                Ok(info) => {
                    log_trim::trim_point(policy, info.state.first_sequence, info.state.last_sequence, slowest)
                }
                Err(e) => {
                    tracing::debug!("cannot read the cluster log's state to trim it: {e}");
                    None
                }
            };
            let Some(point) = point else {
                let _ = to_service.send(ServiceCmd::Trimmed { point: None });
                return;
            };
            let _ = to_service.send(ServiceCmd::TrimAnnounced { point });
            tokio::time::sleep(TRIM_ANNOUNCE_FOR).await;
            // The marker first: a node that starts later must learn the log is trimmed
            // even if the trimmer dies halfway.
            let marker = LogRecord {
                format: wire::LOG_FORMAT,
                node,
                incarnation: 0,
                writes: Vec::new(),
                claim: false,
                serial: 0,
                trimmed_before: point,
            };
            let published = match serde_json::to_vec(&marker) {
                Ok(payload) => match js.publish(wire::LOG_TRIMS, payload.into()).await {
                    Ok(ack) => ack.await.is_ok(),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if !published {
                let _ = to_service.send(ServiceCmd::Trimmed { point: None });
                return;
            }
            let mut trimmed = true;
            for kind in wire::TRIMMED_KINDS {
                let filter = format!("{}.log.{kind}.>", wire::PREFIX);
                if let Err(e) = log.purge().filter(filter.clone()).sequence(point).await {
                    tracing::warn!("cannot trim {filter} of the cluster log before {point}: {e}");
                    trimmed = false;
                }
            }
            // Only the last marker matters.
            let _ = log.purge().filter(wire::LOG_TRIMS).keep(1).await;
            let _ = to_service.send(ServiceCmd::Trimmed { point: trimmed.then_some(point) });
        });
    }

    /// Acts on a change of standing: a node out of touch (no broker, or frozen) owns no
    /// room, so its clients are told `unavailable` and its shards let go; once back and
    /// listened, it takes the owner set it hears.
    fn review_standing(&mut self, serving: bool, log: &stream::Stream) {
        if serving == self.serving {
            return;
        }
        self.serving = serving;
        self.cluster.serving.store(serving, Ordering::Relaxed);
        if serving {
            tracing::info!("in touch with the cluster: this node may own rooms");
            self.take_owners(log);
        } else {
            tracing::warn!(
                "out of touch with the cluster (no broker, or this process was frozen): owning no room"
            );
            self.cluster.set_owners(Vec::new());
            self.mesh.broadcast(|| ShardMsg::ClusterView);
        }
    }

    /// The stand-in shard index of another node's sessions in presence books.
    fn slot(&mut self, node: &str) -> usize {
        let next = self.gateway_index + 1 + self.node_slots.len();
        *self.node_slots.entry(node.to_owned()).or_insert(next)
    }

    fn publish_presence(&self, user: UserId, up: bool) {
        let change = PresenceChange {
            node: self.cluster.node.clone(),
            incarnation: self.cluster.incarnation,
            user,
            up,
        };
        if let Ok(payload) = serde_json::to_vec(&change) {
            let client = self.client.clone();
            tokio::spawn(async move {
                let _ = client.publish(wire::PRESENCE, payload.into()).await;
            });
        }
    }

    fn on_presence(&mut self, payload: &[u8]) {
        let Ok(change) = serde_json::from_slice::<PresenceChange>(payload) else { return };
        if change.node == self.cluster.node
            || self.membership.incarnation(&change.node).is_some_and(|i| i != change.incarnation)
        {
            return;
        }
        let slot = self.slot(&change.node);
        let users = self.remote_up.entry(change.node).or_default();
        let home = self.mesh.home(&change.user);
        if change.up {
            if users.insert(change.user.clone()) {
                self.mesh.send(home, ShardMsg::SessionUp { user: change.user, shard: slot });
            }
        } else if users.remove(&change.user) {
            self.mesh.send(home, ShardMsg::SessionDown { user: change.user, shard: slot });
        }
    }

    /// A notice from another node for sessions here: every local shard delivers it to
    /// the user's sockets it holds (not through the user's home, which would send it on
    /// to the other nodes again).
    fn on_notice(&mut self, payload: &[u8]) {
        let Ok(envelope) = serde_json::from_slice::<wire::NoticeEnvelope>(payload) else { return };
        let frames = match envelope.frame {
            Some(frame) => match Codec::Json.decode_server(frame.as_bytes()) {
                Ok(frame) => Some(LazyFrames::new(frame)),
                Err(_) => return,
            },
            None => None,
        };
        let notice =
            Arc::new(crate::mesh::UserNotice { user: envelope.user, frames, effect: envelope.effect });
        for shard in 0..self.mesh.len() {
            self.mesh.send(shard, ShardMsg::UserEvent(notice.clone()));
        }
    }

    /// A forwarded command for a room this node owns: hand it to the room's shard with
    /// the gateway as its origin; the answer comes back through `on_gateway`.
    fn serve_forwarded(&mut self, message: async_nats::Message) {
        let Some(reply_to) = message.reply else { return };
        let Ok(command) = serde_json::from_slice::<ForwardedCommand>(&message.payload) else {
            tracing::warn!("undecodable forwarded command");
            return;
        };
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(token, (reply_to, Instant::now()));
        let origin = Origin { shard: self.gateway_index, conn: token, re: command.re, user: command.user };
        let hub = self.mesh.owner(command.action.room());
        self.mesh.send(hub, ShardMsg::Command { origin, action: command.action });
    }

    fn on_room_event(&mut self, payload: &[u8]) {
        let Ok(envelope) = serde_json::from_slice::<RoomEventEnvelope>(payload) else { return };
        if envelope.from == self.cluster.node {
            return;
        }
        let room = envelope.room;
        let event = match envelope.event {
            RoomEventBody::Ephemeral { skip, frame } => {
                let Ok(frame) = Codec::Json.decode_server(frame.as_bytes()) else { return };
                RemoteRoomEvent::Ephemeral(Arc::new(Ephemeral {
                    room: room.clone(),
                    skip,
                    frames: LazyFrames::new(frame),
                }))
            }
            RoomEventBody::MemberGone { user } => RemoteRoomEvent::MemberGone { room: room.clone(), user },
            RoomEventBody::RoomGone => RemoteRoomEvent::RoomGone { room: room.clone() },
        };
        self.mesh.send(self.mesh.owner(&room), ShardMsg::RoomEvent(Box::new(event)));
    }

    /// Something a shard addressed to "the other nodes".
    async fn on_gateway(&mut self, msg: ShardMsg) {
        let (room, event) = match msg {
            ShardMsg::Reply(reply) => {
                let Some((reply_to, _)) = self.pending.remove(&reply.conn) else { return };
                if let Some(payload) =
                    ForwardedReply::from_reply(&reply).and_then(|r| serde_json::to_vec(&r).ok())
                {
                    let _ = self.client.publish(reply_to, payload.into()).await;
                }
                return;
            }
            ShardMsg::SessionUp { user, .. } => {
                if self.local_up.insert(user.clone()) {
                    self.publish_presence(user, true);
                }
                return;
            }
            ShardMsg::SessionDown { user, .. } => {
                if self.local_up.remove(&user) {
                    self.publish_presence(user, false);
                }
                return;
            }
            ShardMsg::Ephemeral(event) => {
                let Ok(frame) = Codec::Json.encode_server(event.frames.event()) else { return };
                let Ok(frame) = String::from_utf8(frame) else { return };
                (event.room.clone(), RoomEventBody::Ephemeral { skip: event.skip.clone(), frame })
            }
            ShardMsg::RemoteUserEvent { slot, notice } => {
                self.send_notice(slot, &notice).await;
                return;
            }
            ShardMsg::MemberGone { room, user } => (room, RoomEventBody::MemberGone { user }),
            ShardMsg::RoomGone { room } => (room, RoomEventBody::RoomGone),
            _ => return,
        };
        let subject = wire::room_events(&room);
        let envelope = RoomEventEnvelope { from: self.cluster.node.clone(), room, event };
        if let Ok(payload) = serde_json::to_vec(&envelope) {
            let _ = self.client.publish(subject, payload.into()).await;
        }
    }

    /// Sends a user notice to the node whose sessions `slot` stands for.
    async fn send_notice(&self, slot: usize, notice: &crate::mesh::UserNotice) {
        let Some(node) = self.node_slots.iter().find(|(_, s)| **s == slot).map(|(node, _)| node) else {
            return;
        };
        let frame = match &notice.frames {
            Some(frames) => match Codec::Json.encode_server(frames.event()).map(String::from_utf8) {
                Ok(Ok(frame)) => Some(frame),
                _ => return,
            },
            None => None,
        };
        let envelope =
            wire::NoticeEnvelope { user: notice.user.clone(), frame, effect: notice.effect.clone() };
        if let Ok(payload) = serde_json::to_vec(&envelope) {
            let _ = self.client.publish(wire::notices(node), payload.into()).await;
        }
    }

    /// Returns false to stop.
    async fn on_command(&mut self, cmd: ServiceCmd, log: &stream::Stream) -> bool {
        match cmd {
            ServiceCmd::Forward { node, hub, origin, action } => {
                let join = action.is_join().then(|| action.room().clone());
                let command = ForwardedCommand { user: origin.user.clone(), re: origin.re, action };
                let Ok(payload) = serde_json::to_vec(&command) else { return true };
                let (client, mesh) = (self.client.clone(), self.mesh.clone());
                tokio::spawn(async move {
                    let request = client.request(wire::commands(&node), payload.into());
                    let answer =
                        tokio::time::timeout(Duration::from_millis(FORWARD_TIMEOUT_MS), request).await;
                    let reply = match answer {
                        Ok(Ok(message)) => serde_json::from_slice::<ForwardedReply>(&message.payload)
                            .ok()
                            .and_then(|r| r.into_reply(origin.conn)),
                        Ok(Err(e)) => {
                            tracing::debug!(node = %node, "forwarded command failed: {e}");
                            None
                        }
                        Err(_) => None,
                    };
                    let reply = reply.unwrap_or_else(|| {
                        let mut reply =
                            Reply::plain(&origin, unavailable("the room's node did not answer; try again"));
                        reply.was_join = join;
                        reply
                    });
                    mesh.send(hub, ShardMsg::ForwardedReply { origin_shard: origin.shard, reply });
                });
            }
            ServiceCmd::Publish { subject, payload, expected, done } => {
                let mut publish = jetstream::message::PublishMessage::build().payload(payload.into());
                if let Some(expected) = expected {
                    publish = publish.expected_last_subject_sequence(expected);
                }
                // Sent here in order; acknowledged in the background.
                let mut lost = self.connection_lost.subscribe();
                match self.js.send_publish(subject, publish).await {
                    Ok(ack) => {
                        tokio::spawn(async move {
                            // An acknowledgement goes to this connection: once it is
                            // lost, none will come, so the outcome is unknown at once.
                            let ack = tokio::select! {
                                ack = ack => ack,
                                _ = lost.changed() => {
                                    let lost = "the NATS connection was lost before the log acknowledged";
                                    let _ = done.send(Err(PublishFailure::Unknown(lost.into())));
                                    return;
                                }
                            };
                            let outcome = match ack {
                                Ok(ack) => Ok(ack.sequence),
                                Err(e)
                                    if e.kind()
                                        == jetstream::context::PublishErrorKind::WrongLastSequence =>
                                {
                                    Err(PublishFailure::WrongLast)
                                }
                                Err(e) => Err(PublishFailure::Unknown(e.to_string())),
                            };
                            let _ = done.send(outcome);
                        });
                    }
                    // The client may have buffered it to send after a reconnect.
                    Err(e) => {
                        let _ = done.send(Err(PublishFailure::Unknown(e.to_string())));
                    }
                }
            }
            ServiceCmd::LastOnSubject { subject, done } => {
                let log = log.clone();
                tokio::spawn(async move {
                    let last = match log.get_last_raw_message_by_subject(&subject).await {
                        Ok(message) => Ok(message.sequence),
                        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(0),
                        Err(e) => Err(e.to_string()),
                    };
                    let _ = done.send(last);
                });
            }
            ServiceCmd::ReadSubject { subject, done } => {
                let log = log.clone();
                tokio::spawn(async move {
                    let read = tokio::time::timeout(READ_SUBJECT_TIMEOUT, read_subject(&log, subject)).await;
                    let _ = done
                        .send(read.unwrap_or_else(|_| Err("the cluster log did not answer in time".into())));
                });
            }
            ServiceCmd::Settled { owners } => {
                if self.cluster.settle(&owners) {
                    tracing::info!(?owners, "caught up: serving this node's rooms");
                    // Commands parked for the rooms this node gained go now.
                    self.mesh.broadcast(|| ShardMsg::ClusterView);
                }
            }
            ServiceCmd::Ready => {
                self.ready = true;
                tracing::info!("cluster log caught up: this node may own rooms");
                let change = self.beat().await;
                self.on_change(change, log);
            }
            ServiceCmd::TrimAnnounced { point } => {
                self.trim_before = point;
                self.cluster.fence().forget_before(point);
                let change = self.beat().await;
                self.on_change(change, log);
            }
            ServiceCmd::Trimmed { point } => {
                self.trim_before = 0;
                self.trimming = false;
                if let Some(point) = point {
                    tracing::info!(before = point, "trimmed the cluster log");
                    self.cluster.trimmed_before.store(point, Ordering::Relaxed);
                }
            }
            ServiceCmd::Broker { connected } => {
                if connected {
                    tracing::info!("NATS connection back");
                    self.standing.connected(self.cluster.now_ms());
                } else {
                    tracing::warn!("NATS connection lost");
                    self.connection_lost.send_modify(|losses| *losses += 1);
                    self.standing.disconnected();
                    self.review_standing(false, log);
                }
            }
            ServiceCmd::Stop => {
                let beat = Beat {
                    node: self.cluster.node.clone(),
                    incarnation: self.cluster.incarnation,
                    ready: false,
                    applied: self.cluster.seen(),
                    trim_before: 0,
                };
                if let Ok(payload) = serde_json::to_vec(&beat) {
                    let _ = self.client.publish(wire::DEPARTURES, payload.into()).await;
                    let _ = self.client.flush().await;
                }
                return false;
            }
        }
        true
    }
}
