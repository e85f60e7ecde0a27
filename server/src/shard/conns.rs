//! The connections of one shard, and the per-connection state the shard needs to reach
//! them (outbound queue, session, user, rooms).

use std::cell::{Cell, RefCell};
use std::collections::HashSet;

use rustc_hash::{FxHashMap, FxHashSet};
use std::rc::Rc;

use palaver_core::Session;
use palaver_core::logins::{Login, SessionEnd};
use palaver_protocol::{ErrorBody, ErrorCode, ReplyBody, RoomId, ServerFrame, UserId};

use crate::io::lane::Lane;
use crate::io::outbound::Outbound;
use crate::io::wire::Wire;
use crate::mesh::ConnId;

/// One client connection (WebSocket or QUIC) as its shard sees it.
#[derive(Debug)]
pub struct Conn {
    /// Its id on this shard.
    pub id: ConnId,
    /// Its transport framing and codec.
    pub wire: Wire,
    /// Its outbound queue.
    pub outbound: Outbound,
    /// Auth, rate limit and in-flight accounting.
    pub session: RefCell<Session>,
    /// The login its token belonged to, once authenticated: the socket is closed when
    /// that login ends.
    pub login: RefCell<Option<Login>>,
    /// Rooms this socket is subscribed to.
    pub rooms: RefCell<HashSet<RoomId>>,
    /// When the peer last sent anything (any frame, pongs included), ms since the epoch.
    pub last_heard_ms: Cell<u64>,
    /// Users this socket's user blocked (their messages arrive flagged `blocked`); shared
    /// with the socket's subscriptions.
    pub blocked: Rc<RefCell<FxHashSet<UserId>>>,
    /// Users whose presence this socket follows.
    pub following: RefCell<FxHashSet<UserId>>,
    /// Its connection-limit slots (client address, user), released when it is dropped.
    pub permits: RefCell<crate::io::limits::Permits>,
    /// The outbound queue's completed writes when last seen to move, and since when (ms):
    /// the heartbeat's stall check.
    pub write_watch: Cell<(u64, u64)>,
    /// Request ids whose answer is not sent (QUIC datagram ops, §7.3), one entry per
    /// request; at most the session's in-flight limit.
    quiet: RefCell<Vec<u64>>,
}

impl Conn {
    /// The authenticated user, if any.
    pub fn user(&self) -> Option<UserId> {
        self.session.borrow().user().cloned()
    }

    /// Answers a request the session admitted: the one place its in-flight slot is given
    /// back (every admitted request gets exactly one answer, from its shard or from the
    /// owner or home it was routed to).
    pub fn answer(&self, re: u64, body: ReplyBody) {
        self.session.borrow_mut().finished();
        if self.take_quiet(re) {
            return;
        }
        self.send_frame(&ServerFrame::Reply { re, body });
    }

    /// The next request with id `re` is answered on no stream (a datagram op: the client
    /// expects no reply). A refusal before admission is not sent either.
    pub fn answer_quietly(&self, re: u64) {
        self.quiet.borrow_mut().push(re);
    }

    /// Whether the answer to `re` is not to be sent (and forgets that it was asked).
    pub fn take_quiet(&self, re: u64) -> bool {
        let mut quiet = self.quiet.borrow_mut();
        match quiet.iter().position(|&id| id == re) {
            Some(at) => {
                quiet.swap_remove(at);
                true
            }
            None => false,
        }
    }

    /// Answers an admitted request with a refusal.
    pub fn answer_err(&self, re: u64, code: ErrorCode, message: impl Into<String>) {
        self.answer(re, ReplyBody::Err(ErrorBody::new(code, message)));
    }

    /// Encodes a frame in the connection's codec and framing and queues it (replies
    /// through the reply lane, which a held write does not delay).
    pub fn send_frame(&self, frame: &ServerFrame) {
        match self.wire.encode(frame) {
            Ok(bytes) if matches!(frame, ServerFrame::Reply { .. }) => {
                self.outbound.push_reply(bytes);
            }
            Ok(bytes) => {
                self.outbound.push(bytes, Lane::of(frame));
            }
            Err(e) => tracing::error!("cannot encode reply: {e}"),
        }
    }
}

/// Connections by id, and by user.
#[derive(Debug, Default)]
pub struct Conns {
    next_id: Cell<ConnId>,
    by_id: RefCell<FxHashMap<ConnId, Rc<Conn>>>,
    by_user: RefCell<FxHashMap<UserId, Vec<ConnId>>>,
}

impl Conns {
    /// A fresh id no connection will take: the asker of a room command an HTTP route
    /// sends (its answer comes back like a connection's).
    pub fn reserve_id(&self) -> ConnId {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        id
    }

    /// Registers a new connection.
    pub fn insert(&self, wire: Wire, outbound: Outbound, session: Session, now_ms: u64) -> Rc<Conn> {
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let conn = Rc::new(Conn {
            id,
            wire,
            outbound,
            session: RefCell::new(session),
            login: RefCell::new(None),
            rooms: RefCell::new(HashSet::new()),
            last_heard_ms: Cell::new(now_ms),
            blocked: Rc::default(),
            following: RefCell::default(),
            permits: RefCell::default(),
            write_watch: Cell::new((0, now_ms)),
            quiet: RefCell::default(),
        });
        self.by_id.borrow_mut().insert(id, conn.clone());
        conn
    }

    /// Records that `conn` authenticated as `user`.
    pub fn bind_user(&self, conn: ConnId, user: &UserId) {
        self.by_user.borrow_mut().entry(user.clone()).or_default().push(conn);
    }

    /// A connection by id.
    pub fn get(&self, id: ConnId) -> Option<Rc<Conn>> {
        self.by_id.borrow().get(&id).cloned()
    }

    /// The connections of a user on this shard.
    pub fn of_user(&self, user: &UserId) -> Vec<ConnId> {
        self.by_user.borrow().get(user).cloned().unwrap_or_default()
    }

    /// Removes a connection; returns it.
    pub fn remove(&self, id: ConnId) -> Option<Rc<Conn>> {
        let conn = self.by_id.borrow_mut().remove(&id)?;
        if let Some(user) = conn.user() {
            let mut by_user = self.by_user.borrow_mut();
            if let Some(list) = by_user.get_mut(&user) {
                list.retain(|c| *c != id);
                if list.is_empty() {
                    by_user.remove(&user);
                }
            }
        }
        Some(conn)
    }

    /// The connections on this shard of the logins `end` ends.
    pub fn of_ended_logins(&self, end: &SessionEnd) -> Vec<Rc<Conn>> {
        let by_id = self.by_id.borrow();
        self.of_user(&end.user)
            .into_iter()
            .filter_map(|id| by_id.get(&id))
            .filter(|conn| conn.login.borrow().as_ref().is_some_and(|login| end.ends(login)))
            .cloned()
            .collect()
    }

    /// Every connection.
    pub fn all(&self) -> Vec<Rc<Conn>> {
        self.by_id.borrow().values().cloned().collect()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.borrow().is_empty()
    }
}
