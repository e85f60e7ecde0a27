//! Webhooks: events delivered to other services over HTTP, signed the Standard Webhooks
//! way. Which targets and addresses a delivery may reach, and its retry schedule, are
//! `palaver_core::webhooks`; signing is here.

pub mod signing;
