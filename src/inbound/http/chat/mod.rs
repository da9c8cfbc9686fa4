//! `POST /v1/chat/completions`: OpenAI's chat completions, answered by a Hailuo account,
//! as one JSON document or as server-sent events forwarded the moment they arrive. The
//! request's documented shape is in [`dto`] and [`parts`] (with [`schema`] for what the derives
//! cannot say); its reading into the domain's prompt in [`read`] (the content parts in
//! `content`, the fields only checked in `unsupported`); the operation in [`handler`]; the
//! complete answer in [`answer`] and the event stream of a streamed one in [`sse`].

pub mod answer;
mod content;
pub mod dto;
pub mod handler;
pub mod parts;
pub mod read;
pub mod schema;
pub mod sse;
mod unsupported;

pub use answer::Usage;
pub use handler::ChatApi;
pub use read::ReadLimits;
