//! `GET /ping` and the welcome page.

use poem_openapi::OpenApi;
use poem_openapi::payload::{Html, PlainText};

use super::ApiTags;
use super::error::docs;
use super::openapi::{Answer, Failures};

/// Liveness and the welcome page.
pub struct SystemApi;

const WELCOME: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hailuo-free-api</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>hailuo-free-api</h1>
<p>An OpenAI-compatible gateway to the Hailuo AI (MiniMax) web app.</p>
<ul>
<li><a href="/docs">API documentation (Swagger UI)</a></li>
<li><a href="/openapi.json">OpenAPI specification</a></li>
<li><a href="/v1/models">Models</a></li>
</ul>
<p>Point any OpenAI client here with your Hailuo token(s) as the API key.</p>
</body></html>
"#;

/// The error statuses of `GET /ping`.
pub struct PingErrors;

impl Failures for PingErrors {
    const ERRORS: &'static [docs::ErrorDoc] = docs::PING;
}

#[OpenApi(tag = "ApiTags::System")]
impl SystemApi {
    /// Liveness probe
    ///
    /// Answers `pong` while the server runs; it needs no `Authorization`.
    #[oai(path = "/ping", method = "get", operation_id = "ping")]
    async fn ping(&self) -> Answer<PlainText<&'static str>, PingErrors> {
        Answer::ok(PlainText("pong"))
    }

    /// Welcome page
    #[oai(path = "/", method = "get", hidden)]
    async fn welcome(&self) -> Html<&'static str> {
        Html(WELCOME)
    }
}
