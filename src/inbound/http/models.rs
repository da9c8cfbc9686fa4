//! `GET /v1/models` and `GET /v1/models/{model}`: the model names clients may pick.

use poem::http::StatusCode;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{Object, OpenApi};
use serde::Serialize;

use super::ApiTags;
use super::error::{ApiError, ErrorCode, ErrorType, docs};
use super::openapi::{Answer, Failures};

/// The list of models.
#[derive(Debug, Object, Serialize)]
#[oai(example)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

/// One model.
#[derive(Debug, Object, Serialize)]
#[oai(example)]
pub struct Model {
    /// The name to send as `model`.
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// Who serves it.
    pub owned_by: String,
}

/// Model names: chat models (all answered by the same Hailuo chat), speech and transcription.
pub const MODEL_IDS: [&str; 6] = [
    "hailuo",
    "MiniMax-Text-01",
    "MiniMax-VL-01",
    "tts-1",
    "tts-1-hd",
    "whisper-1",
];

/// 2025-01-15, when MiniMax-01 was released.
const CREATED: i64 = 1_736_899_200;

impl Model {
    /// The model named `id`, when it is one of [`MODEL_IDS`].
    fn named(id: &str) -> Option<Self> {
        MODEL_IDS.contains(&id).then(|| Self {
            id: id.to_owned(),
            object: "model".into(),
            created: CREATED,
            owned_by: "minimax".into(),
        })
    }
}

impl Example for Model {
    fn example() -> Self {
        Self {
            id: "MiniMax-Text-01".into(),
            object: "model".into(),
            created: CREATED,
            owned_by: "minimax".into(),
        }
    }
}

impl Example for ModelList {
    fn example() -> Self {
        Self {
            object: "list".into(),
            data: vec![Model::example()],
        }
    }
}

/// The error statuses of `GET /v1/models`.
pub struct ListErrors;

impl Failures for ListErrors {
    const ERRORS: &'static [docs::ErrorDoc] = docs::MODELS;
}

/// The error statuses of `GET /v1/models/{model}`.
pub struct RetrieveErrors;

impl Failures for RetrieveErrors {
    const ERRORS: &'static [docs::ErrorDoc] = docs::MODEL;
}

/// The models resource.
pub struct ModelsApi;

#[OpenApi(tag = "ApiTags::Models")]
impl ModelsApi {
    /// List models
    ///
    /// The model names this gateway lists. Every chat model is answered by Hailuo's web
    /// chat, and chat accepts any other name too (it is echoed back in the answer);
    /// `tts-1` / `tts-1-hd` select the voice table of `/v1/audio/speech`. Open without server
    /// API keys; with them (`auth.api_keys`), send one as `Authorization: Bearer sk-...`.
    #[oai(path = "/v1/models", method = "get", operation_id = "listModels")]
    async fn list(&self) -> Answer<Json<ModelList>, ListErrors> {
        Answer::ok(Json(ModelList {
            object: "list".into(),
            data: MODEL_IDS.iter().filter_map(|id| Model::named(id)).collect(),
        }))
    }

    /// Retrieve a model
    ///
    /// One of the models `GET /v1/models` lists; any other name is 404 `model_not_found`
    /// (chat still accepts it).
    #[oai(path = "/v1/models/:model", method = "get", operation_id = "retrieveModel")]
    async fn retrieve(
        &self,
        /// The model's name, as `GET /v1/models` lists it (`hailuo`, `MiniMax-Text-01`, `tts-1`).
        #[oai(example = "model_example")]
        model: Path<String>,
    ) -> Answer<Json<Model>, RetrieveErrors> {
        match Model::named(&model.0) {
            Some(found) => Answer::ok(Json(found)),
            None => Answer::error(
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    ErrorType::InvalidRequestError,
                    ErrorCode::ModelNotFound,
                    "no such model here: `GET /v1/models` lists the models of this gateway",
                )
                .with_param("model"),
            ),
        }
    }
}

fn model_example() -> String {
    "MiniMax-Text-01".into()
}
