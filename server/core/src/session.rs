//! One connection's session: authentication state, op rate limit, requests in flight,
//! and the count of undecodable frames.

use palaver_protocol::{Op, UserId};

use crate::error::CoreError;
use crate::rate::TokenBucket;

/// Per-connection limits, all configurable by the operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Sustained ops per second.
    pub ops_per_sec: u32,
    /// Ops allowed in a burst.
    pub ops_burst: u32,
    /// Requests awaiting an answer at once.
    pub max_in_flight: u32,
    /// Undecodable frames in a row before the socket is closed.
    pub max_invalid_streak: u32,
    /// Time allowed from connect to a successful `auth`, in ms.
    pub auth_deadline_ms: u64,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            ops_per_sec: 100,
            ops_burst: 200,
            max_in_flight: 256,
            max_invalid_streak: 16,
            auth_deadline_ms: 10_000,
        }
    }
}

/// A connection's session state.
#[derive(Debug, Clone)]
pub struct Session {
    limits: SessionLimits,
    user: Option<UserId>,
    bucket: TokenBucket,
    in_flight: u32,
    invalid_streak: u32,
    connected_ms: u64,
}

/// What the driver should do with a frame that failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Answer `invalid` and keep the socket.
    KeepOpen,
    /// Too much garbage: close the socket (WebSocket 1008).
    Close,
}

impl Session {
    /// A fresh, unauthenticated session that connected at `now_ms`.
    pub fn new(limits: SessionLimits, now_ms: u64) -> Self {
        Self {
            limits,
            user: None,
            bucket: TokenBucket::new(limits.ops_per_sec, limits.ops_burst, now_ms),
            in_flight: 0,
            invalid_streak: 0,
            connected_ms: now_ms,
        }
    }

    /// The authenticated user, if any.
    pub fn user(&self) -> Option<&UserId> {
        self.user.as_ref()
    }

    /// When an unauthenticated session must be closed, in ms.
    pub fn auth_deadline_ms(&self) -> u64 {
        self.connected_ms + self.limits.auth_deadline_ms
    }

    /// Decides whether a decoded op may run now. On `Ok` the request counts as in flight
    /// until [`Session::finished`].
    pub fn admit(&mut self, now_ms: u64, op: &Op) -> Result<(), CoreError> {
        self.invalid_streak = 0;
        match (op, &self.user) {
            (Op::Auth { .. }, Some(_)) => return Err(CoreError::AlreadyAuthenticated),
            (Op::Auth { .. }, None) => {}
            (_, None) => return Err(CoreError::NotAuthenticated),
            (_, Some(_)) => {}
        }
        self.bucket.take(now_ms).map_err(|retry_after_ms| CoreError::RateLimited { retry_after_ms })?;
        if self.in_flight >= self.limits.max_in_flight {
            return Err(CoreError::TooManyInFlight { limit: self.limits.max_in_flight });
        }
        self.in_flight += 1;
        Ok(())
    }

    /// A request admitted earlier has been answered.
    pub fn finished(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Requests awaiting an answer.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// The socket authenticated as `user`.
    pub fn authenticated(&mut self, user: UserId) {
        self.user = Some(user);
    }

    /// A frame could not be decoded.
    pub fn invalid_frame(&mut self) -> Admission {
        self.invalid_streak += 1;
        if self.invalid_streak >= self.limits.max_invalid_streak {
            Admission::Close
        } else {
            Admission::KeepOpen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use palaver_protocol::RoomId;

    fn leave() -> Op {
        Op::Leave { room: RoomId::parse("r_a").unwrap() }
    }

    #[test]
    fn only_auth_before_authentication() {
        let mut s = Session::new(SessionLimits::default(), 0);
        assert_eq!(s.admit(0, &leave()), Err(CoreError::NotAuthenticated));
        assert!(s.admit(0, &Op::Auth { token: "t".into() }).is_ok());
        s.finished();
        s.authenticated(UserId::parse("u_a").unwrap());
        assert!(s.admit(0, &leave()).is_ok());
        assert_eq!(s.admit(0, &Op::Auth { token: "t".into() }), Err(CoreError::AlreadyAuthenticated));
    }

    #[test]
    fn rate_limit_and_in_flight_limit() {
        let limits = SessionLimits { ops_per_sec: 10, ops_burst: 2, max_in_flight: 1, ..Default::default() };
        let mut s = Session::new(limits, 0);
        s.authenticated(UserId::parse("u_a").unwrap());
        assert!(s.admit(0, &leave()).is_ok());
        assert_eq!(s.admit(0, &leave()), Err(CoreError::TooManyInFlight { limit: 1 }));
        s.finished();
        assert_eq!(s.admit(0, &leave()), Err(CoreError::RateLimited { retry_after_ms: 100 }));
        assert!(s.admit(100, &leave()).is_ok());
    }

    #[test]
    fn a_garbage_streak_closes_but_a_good_frame_resets_it() {
        let limits = SessionLimits { max_invalid_streak: 3, ..Default::default() };
        let mut s = Session::new(limits, 0);
        assert_eq!(s.invalid_frame(), Admission::KeepOpen);
        assert_eq!(s.invalid_frame(), Admission::KeepOpen);
        let _ = s.admit(0, &Op::Ping {});
        assert_eq!(s.invalid_frame(), Admission::KeepOpen);
        assert_eq!(s.invalid_frame(), Admission::KeepOpen);
        assert_eq!(s.invalid_frame(), Admission::Close);
    }
}
