//! Use cases: account scheduling, device registration, chat with retries, and cleanup.
