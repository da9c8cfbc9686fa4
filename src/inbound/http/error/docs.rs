//! What each operation's error statuses mean, for the OpenAPI document: one entry per status
//! and meaning, and one list per operation of the statuses it can answer with. Every list
//! names the statuses the code sends for that operation (the middleware's included: the API
//! key gate, the body limits), and no other.

/// A documented error status: the status and what it means for the operation.
pub type ErrorDoc = (u16, &'static str);

const BAD_CHAT: ErrorDoc = (
    400,
    "The request is malformed: bad JSON, wrong types, a value out of its range, missing or empty \
     fields, or more tokens in `Authorization` than `accounts.max_tokens_per_request` \
     (`too_many_tokens`); an attachment cannot be fetched (`invalid_attachment`); or the upstream \
     refused what it asks: its content (`content_filtered`), a prompt longer than it takes \
     (`context_length_exceeded`), a file type it does not take (`unsupported_file_type`).",
);

const BAD_SPEECH: ErrorDoc = (
    400,
    "The request is malformed: bad JSON, wrong types, an empty or too long `input`, an unknown \
     `response_format`, a `speed` out of 0.25-4, more tokens in `Authorization` than \
     `accounts.max_tokens_per_request` (`too_many_tokens`); the upstream's dialect has no speech \
     (`minimax-agent`); or the upstream refused the text (`content_filtered`), found it longer \
     than it takes (`input_too_long`) or does not know the voice (`unknown_voice`).",
);

const BAD_TRANSCRIPTION: ErrorDoc = (
    400,
    "The form is malformed (no `file`, an unknown `response_format`), the file is empty or not \
     audio this server decodes (`invalid_audio`), more tokens in `Authorization` than \
     `accounts.max_tokens_per_request` (`too_many_tokens`); the upstream's dialect has no \
     transcription (`minimax-agent`); or the upstream could not use the audio (`invalid_audio`).",
);

const ACCOUNTS_UNAUTHORIZED: ErrorDoc = (
    401,
    "No usable `Authorization: Bearer` value (a wrong API key, or a raw Hailuo token where the \
     server requires API keys), or the upstream refused every token given (or they all rest for \
     `accounts.cooldown_secs` after repeated refusals).",
);

const KEY_UNAUTHORIZED: ErrorDoc = (
    401,
    "The server requires API keys (`auth.api_keys`) and the request has no valid one \
     (`Authorization: Bearer sk-...`).",
);

const CONVERSATION_NOT_FOUND: ErrorDoc = (
    404,
    "`conversation_id` names no conversation of this caller (none by that id, or one another key \
     or token created).",
);

const MODEL_NOT_FOUND: ErrorDoc = (
    404,
    "The model named is not one of those `GET /v1/models` lists (`model_not_found`).",
);

const BODY_TIMEOUT: ErrorDoc = (
    408,
    "The request body did not arrive within `server.body_timeout_secs`, or arrived slower than \
     `server.min_body_bytes_per_sec`; the connection is closed.",
);

const BODY_TOO_LARGE: ErrorDoc = (413, "The request body is larger than `server.max_body_bytes`.");

const CHAT_TOO_LARGE: ErrorDoc = (
    413,
    "The request body is larger than `server.max_body_bytes`, an attachment is larger than \
     `files.max_bytes`, or the attachments of the request are larger than \
     `files.max_total_bytes` together, or an attachment is larger than the upstream takes \
     (`attachment_too_large`).",
);

const UPLOAD_TOO_LARGE: ErrorDoc = (
    413,
    "The request body is larger than `server.max_body_bytes`, the file is larger than \
     `audio.max_upload_bytes` (`file_too_large`), or it lasts longer than \
     `audio.max_duration_secs`, decodes to more than `audio.max_decoded_bytes` or is longer than \
     the upstream takes (`audio_too_long`).",
);

const BODY_NOT_ALLOWED: ErrorDoc = (
    413,
    "The request carries a body, which this operation does not take (`body_not_allowed`); the \
     connection is closed.",
);

const BUSY: ErrorDoc = (
    429,
    "Every account token given stayed busy past `accounts.busy_wait_secs` (`accounts_busy`), or \
     the upstream limits the requests of every one (`account_rate_limited`); retry after the \
     `Retry-After` seconds.",
);

const INTERNAL: ErrorDoc = (500, "The server's own store or audio codec failed.");

const BAD_GATEWAY: ErrorDoc = (
    502,
    "The upstream refused the request for a reason of its own (in the message), refused what the \
     gateway sent (its protocol changed), or failed.",
);

const OVERLOADED: ErrorDoc = (
    503,
    "The server is overloaded: `server.max_in_flight` upstream requests run and \
     `server.max_queued` wait; retry after the `Retry-After` seconds.",
);

const UPSTREAM_TIMEOUT: ErrorDoc = (
    504,
    "The upstream's answer did not begin within `upstream.first_byte_timeout_secs`, or it went \
     silent for `upstream.idle_timeout_secs`, after the retries.",
);

/// `POST /v1/chat/completions`.
pub const CHAT: &[ErrorDoc] = &[
    BAD_CHAT,
    ACCOUNTS_UNAUTHORIZED,
    CONVERSATION_NOT_FOUND,
    BODY_TIMEOUT,
    CHAT_TOO_LARGE,
    BUSY,
    INTERNAL,
    BAD_GATEWAY,
    OVERLOADED,
    UPSTREAM_TIMEOUT,
];

/// `POST /v1/audio/speech`.
pub const SPEECH: &[ErrorDoc] = &[
    BAD_SPEECH,
    ACCOUNTS_UNAUTHORIZED,
    BODY_TIMEOUT,
    BODY_TOO_LARGE,
    BUSY,
    INTERNAL,
    BAD_GATEWAY,
    OVERLOADED,
    UPSTREAM_TIMEOUT,
];

/// `POST /v1/audio/transcriptions`.
pub const TRANSCRIPTION: &[ErrorDoc] = &[
    BAD_TRANSCRIPTION,
    ACCOUNTS_UNAUTHORIZED,
    BODY_TIMEOUT,
    UPLOAD_TOO_LARGE,
    BUSY,
    INTERNAL,
    BAD_GATEWAY,
    OVERLOADED,
    UPSTREAM_TIMEOUT,
];

/// `POST /token/check`.
pub const TOKEN_CHECK: &[ErrorDoc] = &[
    (
        400,
        "The request is malformed: bad JSON, wrong types, a missing or empty `token`.",
    ),
    KEY_UNAUTHORIZED,
    BODY_TIMEOUT,
    BODY_TOO_LARGE,
    INTERNAL,
    (502, "The upstream could not be asked."),
    (504, "The upstream did not answer in time."),
];

/// `GET /v1/models`.
pub const MODELS: &[ErrorDoc] = &[KEY_UNAUTHORIZED, BODY_NOT_ALLOWED];

/// `GET /v1/models/{model}`.
pub const MODEL: &[ErrorDoc] = &[KEY_UNAUTHORIZED, MODEL_NOT_FOUND, BODY_NOT_ALLOWED];

/// `GET /ping`.
pub const PING: &[ErrorDoc] = &[BODY_NOT_ALLOWED];
