//! The Hailuo web protocol adapter (protocol doc §1–§9).
