//! Store adapters: in memory (and SQLite, later).
