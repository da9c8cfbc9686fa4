//! Outbound adapters: the Hailuo web protocol and the stores.

pub mod attachments;
pub mod audio;
pub mod hailuo;
pub mod store;
pub mod telemetry;
