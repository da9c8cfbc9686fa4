//! `GET /v1/models`: the model names clients may pick.

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use serde::Serialize;

use super::ApiTags;

/// The list of models.
#[derive(Debug, Object, Serialize)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

/// One model.
#[derive(Debug, Object, Serialize)]
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

/// The models resource.
pub struct ModelsApi;

#[OpenApi(tag = "ApiTags::Models")]
impl ModelsApi {
    /// List models
    ///
    /// The model names this gateway accepts. Every chat model is answered by Hailuo's web
    /// chat; `tts-1` / `tts-1-hd` select the voice table of `/v1/audio/speech`.
    #[oai(path = "/v1/models", method = "get")]
    async fn list(&self) -> Json<ModelList> {
        Json(ModelList {
            object: "list".into(),
            data: MODEL_IDS
                .iter()
                .map(|id| Model {
                    id: (*id).to_owned(),
                    object: "model".into(),
                    // 2025-01-15, when MiniMax-01 was released.
                    created: 1_736_899_200,
                    owned_by: "minimax".into(),
                })
                .collect(),
        })
    }
}
