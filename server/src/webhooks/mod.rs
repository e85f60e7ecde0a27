//! Webhooks: events delivered to other services over HTTP, signed the Standard Webhooks
//! way. Which targets and addresses a delivery may reach, which events a registration
//! hears, and the retry schedule are `palaver_core::webhooks`; here are the signing, the
//! registrations every part of the server reads, and the sender thread that works
//! through this node's outbound queue.

pub mod http_post;
pub mod registrations;
pub mod sender;
pub mod signing;

pub use registrations::Webhooks;
