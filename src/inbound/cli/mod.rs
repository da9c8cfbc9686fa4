//! The command line's subcommands beside serving: tools an operator runs against the
//! configured upstream.

pub mod doctor;
