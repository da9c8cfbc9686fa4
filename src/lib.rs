//! hailuo-free-api: an OpenAI-compatible gateway to the Hailuo AI (MiniMax) web app.
//!
//! The crate is hexagonal: [`domain`] holds the models, the ports and the use cases;
//! [`inbound`] is the OpenAI-compatible HTTP surface; [`outbound`] holds the adapters (the
//! Hailuo web protocol, the stores); [`startup`] wires them. The simulated upstream the tests
//! run against is a crate of its own, `hailuo-sim`, which this one never depends on.

pub mod config;
pub mod domain;
pub mod inbound;
#[cfg(test)]
mod json_props;
pub mod outbound;
pub mod startup;
