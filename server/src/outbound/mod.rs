//! This node's outbound queue, sent: one thread of its own, never a shard, that posts
//! signed webhook deliveries to their endpoints, expands push fan-outs into pushes and
//! posts each to its push service. What is queued, and when, is decided where the events
//! are (the room owner's commit); here it is only carried out.

mod push;
pub mod sender;

pub use sender::Attempt;
