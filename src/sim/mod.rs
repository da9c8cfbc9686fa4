//! `hailuo-sim`: a simulated Hailuo upstream that enforces the protocol.
