//! Webhooks: events delivered to other services over HTTP, signed the Standard Webhooks
//! way. Which targets and addresses a delivery may reach, which events a registration
//! hears, and the retry schedule are `palaver_core::webhooks`; here are the signing, the
//! registrations every part of the server reads, and the HTTP client that posts a
//! delivery. The thread that works through this node's outbound queue is `outbound`'s.

pub mod http_post;
pub mod registrations;
pub mod signing;

pub use registrations::Webhooks;
