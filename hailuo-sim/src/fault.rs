//! The faults a test makes the simulated upstream play on chat requests, each one a way the
//! real upstream (or the network to it) is known to misbehave.

use std::time::Duration;

/// A misbehaviour for the next chat request (any token) to suffer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// After this many answer events, an error event with code 1500001
    /// (`内容涉及敏感信息，请修改后重试`); then the stream ends.
    ContentFiltered {
        /// Answer events sent before the error.
        after_events: usize,
    },
    /// HTTP 500 with a non-JSON body, before any event.
    ServerError,
    /// An HTTP 200 JSON envelope with code 1004 (`登录已失效，请重新登录`) instead of a stream.
    AccountRefused,
    /// Headers, then not a byte for an hour (ends when the client disconnects).
    Hang,
    /// This request's events are spaced by this delay.
    SlowChunks(Duration),
    /// The connection breaks after this many answer events, without an end event (a clean
    /// close, [`RESET_PAUSE`] after the last bytes so that they reach the client).
    CutStream {
        /// Answer events sent before the cut.
        after_events: usize,
    },
    /// A `data:` line that is not JSON, then the normal stream.
    MalformedEvent,
    /// The TCP connection is reset (an RST, no response byte at all) once the request has been
    /// read and checked, before any conversation is made.
    ResetBeforeResponse,
    /// The TCP connection is reset (an RST) after this many answer events. Unlike
    /// [`CutStream`](Self::CutStream), a clean close (FIN) of a body shorter than its
    /// `Content-Length`, the client's next read fails with "connection reset". The reset comes
    /// [`RESET_PAUSE`] after the last event, since an RST makes the peer's kernel drop
    /// what its reader has not taken yet.
    ResetStream {
        /// Answer events sent before the reset.
        after_events: usize,
    },
    /// An upstream that hangs, then answers: nothing for this long after the request was
    /// read (no head, no conversation), then the conversation is made and answered as usual.
    LateAnswer(Duration),
    /// HTTP 200 `application/json` whose body is an envelope cut short (`{"statusInfo":`),
    /// instead of a stream; no conversation is made.
    MalformedEnvelope,
}

/// How long a [`Fault::ResetStream`] waits after its last event before resetting.
pub const RESET_PAUSE: Duration = Duration::from_millis(100);

impl Fault {
    /// The variant's name, e.g. `CutStream`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::ContentFiltered { .. } => "ContentFiltered",
            Fault::ServerError => "ServerError",
            Fault::AccountRefused => "AccountRefused",
            Fault::Hang => "Hang",
            Fault::SlowChunks(_) => "SlowChunks",
            Fault::CutStream { .. } => "CutStream",
            Fault::MalformedEvent => "MalformedEvent",
            Fault::ResetBeforeResponse => "ResetBeforeResponse",
            Fault::ResetStream { .. } => "ResetStream",
            Fault::MalformedEnvelope => "MalformedEnvelope",
            Fault::LateAnswer(_) => "LateAnswer",
        }
    }

    /// The faults [`Faults::set_rate`](crate::Faults::set_rate) draws from, equally likely:
    /// every fault that ends on its own ([`Fault::Hang`] is left out: a silent stream holds the
    /// account upstream until the client's timeout, which a rate would turn into a test of
    /// patience).
    pub const MIX: [Fault; 10] = [
        Fault::ServerError,
        Fault::AccountRefused,
        Fault::ContentFiltered { after_events: 0 },
        Fault::ContentFiltered { after_events: 2 },
        Fault::CutStream { after_events: 0 },
        Fault::CutStream { after_events: 2 },
        Fault::MalformedEvent,
        Fault::ResetBeforeResponse,
        Fault::ResetStream { after_events: 2 },
        Fault::MalformedEnvelope,
    ];
}
