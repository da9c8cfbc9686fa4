//! `POST /v1/chat/completions`: OpenAI's chat completions, answered by a Hailuo account,
//! as one JSON document or as server-sent events forwarded the moment they arrive. The
//! request and answer types and their reading into the domain's prompt are in [`dto`], the
//! operation in [`handler`], the event stream of a streamed answer in [`sse`].

pub mod dto;
pub mod handler;
pub mod sse;

pub use dto::Usage;
pub use handler::ChatApi;
