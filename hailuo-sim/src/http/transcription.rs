//! Transcription (protocol §9): `POST /v1/api/chat/phone_msg` takes a voice message (multipart,
//! signed over the first 1,024 bytes of its audio), decodes it as MP3, and answers an event
//! stream: the transcript in an `asr_chunk` event, then the app's spoken reply in `audio_chunk`
//! events for about three seconds, which a client that only wants the transcript should not
//! wait for.

use std::sync::Arc;
use std::time::Duration;

use poem::web::Multipart;
use poem::{FromRequest, Request, Response};
use serde_json::json;

use super::admission::{Expectation, SignedBody, admit, busy_envelope, refuse};
use super::sse::{ClientGone, EventWriter, event_stream_response};
use crate::audio;
use crate::records::PhoneRecord;
use crate::refusal::RefusedCall;
use crate::replies;
use crate::state::{SimState, StreamGuard};
use crate::verify::{Rejection, VoiceSignedFields};

/// The event carrying the transcript (and any error about the audio).
const ASR_EVENT: &str = "asr_chunk";
/// The events carrying the app's spoken reply.
const AUDIO_EVENT: &str = "audio_chunk";
/// `status_code`: no speech heard.
pub(crate) const NO_SPEECH_CODE: i64 = 1_200_041;
/// `status_code`: the upload is not MP3.
pub(crate) const BAD_AUDIO_CODE: i64 = 1_200_040;
/// `status_code`: the simulator itself failed.
const INTERNAL_CODE: i64 = 1_500_002;
/// Below this RMS level (full scale 1.0, about -40 dBFS) the audio is silence.
const SILENCE_RMS: f32 = 0.01;
/// Shorter audio holds no speech.
const MIN_SPEECH: Duration = Duration::from_millis(300);
/// `audio_chunk` events of the spoken reply.
const REPLY_CHUNKS: usize = 15;
/// Pause between `audio_chunk` events (15 × 200 ms: about three seconds).
const REPLY_GAP: Duration = Duration::from_millis(200);

/// The fields of a voice message, as sent.
struct VoiceFields {
    character_id: String,
    chat_id: String,
    voice: Vec<u8>,
}

/// Handles one voice message.
pub(crate) async fn phone_msg(state: &Arc<SimState>, req: Request) -> Response {
    let (req, mut body) = req.split();
    let fields = match read_voice_fields(&req, &mut body).await {
        Ok(fields) => fields,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let expect = Expectation {
        registering: None,
        referer_chat: None,
        event_stream: true,
        signed: SignedBody::Voice(VoiceSignedFields {
            character_id: &fields.character_id,
            chat_id: &fields.chat_id,
            voice: &fields.voice,
        }),
        own_query: &[],
    };
    let token = match admit(state, &req, &expect) {
        Ok(caller) => caller.token,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let (guard, busy) = state.open_stream(&token);
    if busy {
        let reply = state.busy_reply();
        return match busy_envelope(&reply) {
            Some(response) => response,
            None => single_event(guard, reply.code, reply.message),
        };
    }
    let refusal = state.ledger().faults.take_refusal(RefusedCall::Voice);
    if let Some(refusal) = refusal {
        return single_event(guard, refusal.code(), refusal.message().to_owned());
    }

    let bytes_len = fields.voice.len();
    let voice = fields.voice;
    let analysed = tokio::task::spawn_blocking(move || audio::analyse_mp3(voice)).await;
    let summary = match analysed {
        Ok(Ok(summary)) => summary,
        Ok(Err(why)) => {
            let short: String = token.chars().take(12).collect();
            state.violation(format!(
                "POST /v1/api/chat/phone_msg (token {short:?}): voiceBytes is not MP3: {why}"
            ));
            return single_event(guard, BAD_AUDIO_CODE, "音频格式错误".to_owned());
        }
        Err(err) => {
            tracing::error!(error = %err, "hailuo-sim: the decoding task failed");
            return single_event(guard, INTERNAL_CODE, "服务器错误".to_owned());
        }
    };
    state.ledger().voice.uploads.push(PhoneRecord {
        token,
        bytes_len,
        duration: summary.duration,
        sample_rate: summary.sample_rate,
        channels: summary.channels,
    });
    if summary.rms < SILENCE_RMS || summary.duration < MIN_SPEECH {
        return single_event(guard, NO_SPEECH_CODE, "未识别到语音".to_owned());
    }

    let transcript = replies::transcript_for(summary.duration);
    let (writer, body) = EventWriter::channel(Some(guard));
    let state = Arc::clone(state);
    tokio::spawn(async move {
        if play_reply(writer, &transcript).await.is_err() {
            state.ledger().voice.abandoned += 1;
        }
    });
    event_stream_response(body)
}

/// The transcript, then the spoken reply spread over about three seconds.
async fn play_reply(mut writer: EventWriter, transcript: &str) -> Result<(), ClientGone> {
    let asr = json!({"status_code": 0, "err_message": "", "data": {"text": transcript, "is_final": true}});
    writer.event(ASR_EVENT, &asr.to_string()).await?;
    for index in 0..REPLY_CHUNKS {
        writer.pause(REPLY_GAP).await?;
        let chunk = json!({
            "status_code": 0,
            "err_message": "",
            "data": {"audio": format!("fffb{index:04x}"), "index": index, "is_end": index + 1 == REPLY_CHUNKS}
        });
        writer.event(AUDIO_EVENT, &chunk.to_string()).await?;
    }
    Ok(())
}

/// A stream holding one `asr_chunk` event with a non-zero `status_code`.
fn single_event(guard: StreamGuard, code: i64, message: String) -> Response {
    let (mut writer, body) = EventWriter::channel(Some(guard));
    tokio::spawn(async move {
        let data = json!({"status_code": code, "err_message": message, "data": {}});
        let _ = writer.event(ASR_EVENT, &data.to_string()).await;
    });
    event_stream_response(body)
}

/// Reads and checks the multipart fields (§9): `chatID=0`, `characterID=1`, `playSpeedLevel=1`
/// and the file part `voiceBytes` (`audio.mp3`, `audio/mp3`), nothing else.
async fn read_voice_fields(req: &Request, body: &mut poem::RequestBody) -> Result<VoiceFields, Rejection> {
    let mut multipart = Multipart::from_request(req, body)
        .await
        .map_err(|err| Rejection::bad_parameter(format!("phone_msg body is not multipart/form-data: {err}")))?;
    let (mut character_id, mut chat_id, mut speed, mut voice) = (None, None, None, None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => return Err(Rejection::bad_parameter(format!("broken multipart body: {err}"))),
        };
        let name = field.name().unwrap_or("").to_owned();
        if name == "voiceBytes" {
            let file_name = field.file_name().unwrap_or("");
            let content_type = field.content_type().unwrap_or("");
            if file_name != "audio.mp3" || content_type != "audio/mp3" {
                return Err(Rejection::bad_parameter(format!(
                    "voiceBytes part named {file_name:?} of type {content_type:?}; expected \"audio.mp3\" of type \"audio/mp3\""
                )));
            }
            let bytes = field
                .bytes()
                .await
                .map_err(|err| Rejection::bad_parameter(format!("voiceBytes unreadable: {err}")))?;
            if voice.replace(bytes).is_some() {
                return Err(Rejection::bad_parameter("voiceBytes sent twice"));
            }
            continue;
        }
        if let Some(file_name) = field.file_name() {
            return Err(Rejection::bad_parameter(format!(
                "phone_msg field {name} is a file part ({file_name}); only voiceBytes is"
            )));
        }
        let value = field
            .text()
            .await
            .map_err(|err| Rejection::bad_parameter(format!("phone_msg field {name} unreadable: {err}")))?;
        let (slot, expected) = match name.as_str() {
            "characterID" => (&mut character_id, "1"),
            "chatID" => (&mut chat_id, "0"),
            "playSpeedLevel" => (&mut speed, "1"),
            other => return Err(Rejection::bad_parameter(format!("unknown phone_msg field {other:?}"))),
        };
        if value != expected {
            return Err(Rejection::bad_parameter(format!(
                "phone_msg field {name}={value:?}, expected {expected:?}"
            )));
        }
        if slot.replace(value).is_some() {
            return Err(Rejection::bad_parameter(format!("phone_msg field {name} sent twice")));
        }
    }
    let required = |value: Option<String>, name: &str| {
        value.ok_or_else(|| Rejection::bad_parameter(format!("phone_msg field {name} missing")))
    };
    let fields = VoiceFields {
        character_id: required(character_id, "characterID")?,
        chat_id: required(chat_id, "chatID")?,
        voice: voice.ok_or_else(|| Rejection::bad_parameter("phone_msg file part voiceBytes missing"))?,
    };
    required(speed, "playSpeedLevel")?;
    if fields.voice.is_empty() {
        return Err(Rejection::bad_parameter("voiceBytes is empty"));
    }
    Ok(fields)
}
