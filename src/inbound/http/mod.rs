//! The OpenAI-compatible HTTP surface: one poem-openapi resource per file, OpenAI-shaped
//! errors on every route, Swagger UI at `/docs`, the spec at `/openapi.json` and Prometheus
//! metrics at `/metrics`.

pub mod audio;
pub mod auth;
pub mod chat;
pub mod choice;
pub mod cors;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod routes;
pub mod system;
pub mod text;
pub mod tokens;
pub mod usage;

use std::sync::Arc;

use poem::http::Method;
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::{OpenApi, OpenApiService, Tags};

use crate::domain::service::{ChatService, DeviceRegistry, SpeechService, TranscriptionService};

/// The groups of operations in the documentation.
#[derive(Tags)]
pub enum ApiTags {
    /// Chat completions.
    Chat,
    /// Speech and transcription.
    Audio,
    /// Models.
    Models,
    /// Account tokens.
    Tokens,
    /// Liveness.
    System,
}

/// What the HTTP surface needs from the domain.
#[derive(Clone)]
pub struct HttpState {
    /// The chat use case.
    pub chat: Arc<ChatService>,
    /// The device registry (token checks).
    pub devices: Arc<DeviceRegistry>,
    /// Text to speech.
    pub speech: Arc<SpeechService>,
    /// Speech to text.
    pub transcription: Arc<TranscriptionService>,
    /// Largest transcription upload (and `input_audio` part of a chat).
    pub max_upload_bytes: usize,
    /// How request bodies are read: their size, deadline and rate.
    pub body_limits: crate::config::BodyLimits,
    /// How callers authenticate (API keys, or their own Hailuo tokens).
    pub auth: Arc<auth::ClientAuth>,
    /// The browser origins whose pages may read the answers.
    pub cors_origins: crate::config::CorsOrigins,
}

type Apis = (
    chat::ChatApi,
    audio::AudioApi,
    models::ModelsApi,
    tokens::TokenApi,
    system::SystemApi,
);

fn api_service(state: &HttpState) -> OpenApiService<Apis, ()> {
    let apis = (
        chat::ChatApi::new(
            Arc::clone(&state.chat),
            chat::ReadLimits {
                max_audio_bytes: state.max_upload_bytes,
            },
        ),
        audio::AudioApi::new(
            Arc::clone(&state.speech),
            Arc::clone(&state.transcription),
            state.max_upload_bytes,
        ),
        models::ModelsApi,
        tokens::TokenApi::new(Arc::clone(&state.devices)),
        system::SystemApi,
    );
    OpenApiService::new(apis, "hailuo-free-api", env!("CARGO_PKG_VERSION")).description(
        "An OpenAI-compatible gateway to the Hailuo AI (MiniMax) web app. Authenticate with \
         your Hailuo account token(s) as the bearer token: `Authorization: Bearer TOKEN1,TOKEN2`; \
         or, when the server is configured with API keys (`auth.api_keys`), with one of its keys \
         (`Authorization: Bearer sk-...`) on every `/v1/*` route and `/token/check`: the server \
         then answers with its own Hailuo tokens and refuses raw Hailuo tokens with 401.",
    )
}

/// The OpenAPI document the server serves, as JSON.
pub fn openapi_json(state: &HttpState) -> String {
    api_service(state).spec()
}

/// The routes [`endpoint`] serves: the OpenAPI operations and the routes beside them.
pub fn routes() -> routes::Routes {
    routes::Routes::from_openapi(&Apis::meta())
        // The welcome page: a hidden operation.
        .with("/", [Method::GET])
        .with("/openapi.json", [Method::GET])
        .with("/metrics", [Method::GET])
        .with("/docs/*", [Method::GET])
}

/// Every route, with OpenAI-shaped errors and the body limits. CORS preflights are answered
/// first ([`cors::Cors`]); then the API key is checked ([`auth::ApiKeyGate`]) before any body
/// is read ([`limits::BodyLimit`]).
pub fn endpoint(state: &HttpState) -> impl Endpoint + use<> {
    let service = api_service(state);
    let docs = service.swagger_ui();
    let spec = service.spec_endpoint();
    Route::new()
        .at("/openapi.json", poem::get(spec))
        .at("/metrics", poem::get(metrics::serve_metrics))
        .nest("/docs", poem::get(docs))
        .nest("/", service)
        .data(Arc::clone(&state.auth))
        .with(limits::BodyLimit::new(state.body_limits))
        .with(auth::ApiKeyGate::new(Arc::clone(&state.auth)))
        .catch_all_error(error::openai_error)
        .with(cors::Cors::new(state.cors_origins.clone(), Arc::new(routes())))
        .with(metrics::RequestTelemetry)
}
