//! Speech (protocol §8): `update_robot_custom_config` selects the account's voice, `msg_tts`
//! answers "pending" for a few polls and then the URLs of real MP3s, and `/__audio/<id>.mp3`
//! serves them (a voice-pitched sine tone as long as the spoken text) to a client that sends
//! the web app's `Referer`, as the upstream's CDN does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::{Request, Response};
use serde::Deserialize;
use serde_json::json;

use super::admission::{
    Expectation, SignedBody, admit, admit_json_body, body_text, envelope, refusal_envelope, refuse, success,
};
use crate::audio::{self, SPEECH_MS_PER_CHAR, SPEECH_SAMPLE_RATE};
use crate::ledger::AudioFile;
use crate::records::TtsRecord;
use crate::refusal::RefusedCall;
use crate::state::SimState;
use crate::verify::{self, Rejection};

/// Where the speech audio is served: `/__audio/<id>.mp3`.
pub(crate) const AUDIO_PREFIX: &str = "/__audio/";
/// Polls of a message answered "pending" before its audio is ready, unless a test sets another.
pub(crate) const DEFAULT_TTS_PENDING_POLLS: usize = 2;
/// Two polls of one message closer than this are "polling without pause".
const MIN_POLL_GAP: Duration = Duration::from_millis(100);
/// Texts longer than this (in characters) are spoken in two audio files.
const SPLIT_ABOVE_CHARS: usize = 20;
/// `requestStatus` while the audio is being made.
const TTS_PENDING: u8 = 1;
/// `requestStatus` once the URLs are there.
const TTS_READY: u8 = 2;

/// The body of `update_robot_custom_config`: exactly these fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RobotConfigUpdate {
    #[serde(rename = "robotID")]
    robot_id: String,
    config: RobotConfig,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RobotConfig {
    #[serde(rename = "robotVoiceID")]
    robot_voice_id: String,
}

/// `POST /v1/api/chat/update_robot_custom_config`, body
/// `{"robotID":"1","config":{"robotVoiceID":"<voice>"}}`: the account's voice from now on.
pub(crate) async fn select_voice(state: &Arc<SimState>, mut req: Request) -> Response {
    let outcome = async {
        let (caller, body) = admit_json_body(state, &mut req).await?;
        let update: RobotConfigUpdate = serde_json::from_str(&body).map_err(|err| {
            Rejection::bad_parameter(format!(
                "update_robot_custom_config body {body:?} is not {{\"robotID\":\"1\",\"config\":{{\"robotVoiceID\":\"..\"}}}}: {err}"
            ))
        })?;
        if update.robot_id != "1" {
            return Err(Rejection::bad_parameter(format!(
                "robotID {:?}, expected \"1\"",
                update.robot_id
            )));
        }
        let voice = update.config.robot_voice_id;
        if voice.trim().is_empty() {
            return Err(Rejection::bad_parameter("robotVoiceID is empty"));
        }
        Ok((caller, voice))
    }
    .await;
    match outcome {
        Ok((caller, voice)) => {
            let refusal = state.ledger().faults.take_refusal(RefusedCall::VoiceConfig);
            if let Some(refusal) = refusal {
                return refusal_envelope(refusal);
            }
            state.ledger().speech.voices.insert(caller.token, voice);
            success(json!({}))
        }
        Err(rejection) => refuse(state, &req, rejection),
    }
}

/// `GET /v1/api/chat/msg_tts?msgID=<id>&timbre=<voice>` (the common query follows with `&`) →
/// `{"requestStatus": 1, "result": []}` while pending, then `{"requestStatus": 2, "result": [urls]}`.
pub(crate) async fn msg_tts(state: &Arc<SimState>, mut req: Request) -> Response {
    let outcome = async {
        let body = body_text(&mut req).await?;
        let expect = Expectation {
            registering: None,
            referer_chat: None,
            event_stream: false,
            signed: SignedBody::Json(&body),
            own_query: &["msgID", "timbre"],
        };
        admit(state, &req, &expect)
    }
    .await;
    let caller = match outcome {
        Ok(caller) => caller,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let query = req.uri().query().unwrap_or("");
    let msg_id = verify::query_value(query, "msgID").unwrap_or("").to_owned();
    let timbre = verify::query_value(query, "timbre").unwrap_or("").to_owned();
    let token = caller.token;
    let now = Instant::now();

    let poll = match record_poll(state, &token, &msg_id, &timbre, now) {
        Ok(poll) => poll,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let TtsPoll {
        text,
        mismatch,
        gap,
        ready_urls,
        pending,
    } = poll;

    let short: String = token.chars().take(12).collect();
    if let Some(mismatch) = mismatch {
        state.violation(format!(
            "GET /v1/api/chat/msg_tts (token {short:?}): voice mismatch: {mismatch}"
        ));
    }
    if let Some(gap) = gap.filter(|gap| *gap < MIN_POLL_GAP) {
        state.violation(format!(
            "GET /v1/api/chat/msg_tts (token {short:?}): msgID {msg_id} polled again after {} ms: \
             polling without pause",
            gap.as_millis()
        ));
    }
    if pending {
        return success(json!({"requestStatus": TTS_PENDING, "result": []}));
    }
    let urls = match ready_urls {
        Some(urls) => urls,
        None => match make_speech(state, &msg_id, &text, &timbre).await {
            Ok(urls) => urls,
            Err(err) => {
                tracing::error!(error = %err, "hailuo-sim: speech synthesis failed");
                return envelope(1_500_002, "语音合成失败", json!({}));
            }
        },
    };
    success(json!({"requestStatus": TTS_READY, "result": urls}))
}

/// What one accepted `msg_tts` poll found.
struct TtsPoll {
    /// The message's content, to speak.
    text: String,
    /// A voice mismatch to report.
    mismatch: Option<String>,
    /// Time since the previous poll of this message.
    gap: Option<Duration>,
    /// The URLs, when already made.
    ready_urls: Option<Vec<String>>,
    /// Whether this poll is answered "pending".
    pending: bool,
}

/// Checks that `msg_id` is a live message of `token` and counts the poll.
fn record_poll(state: &SimState, token: &str, msg_id: &str, timbre: &str, now: Instant) -> Result<TtsPoll, Rejection> {
    let mut ledger = state.ledger();
    let message = match ledger.conversations.messages.get(msg_id) {
        Some(message) if message.token == token => message.clone(),
        Some(_) => {
            let what = format!("msgID {msg_id} is a message of another token");
            return Err(Rejection::violation(1_200_003, "消息不存在", what));
        }
        None => {
            let what = format!("msgID {msg_id} is no assistant message this simulator answered");
            return Err(Rejection::violation(1_200_003, "消息不存在", what));
        }
    };
    if ledger.conversations.owner(&message.chat_id) != Some(token) {
        let what = format!(
            "msgID {msg_id}: its conversation {} was deleted before the speech was fetched",
            message.chat_id
        );
        return Err(Rejection::violation(1_200_003, "消息不存在", what));
    }
    let voice = ledger.speech.voices.get(token).cloned();
    let mismatch = (voice.as_deref() != Some(timbre))
        .then(|| format!("token {token:?}, msgID {msg_id}: timbre {timbre:?} while the account's voice is {voice:?}"));
    if let Some(mismatch) = &mismatch {
        ledger.speech.voice_mismatches.push(mismatch.clone());
    }
    let job = ledger.speech.jobs.entry(msg_id.to_owned()).or_default();
    job.polls += 1;
    let polls = job.polls;
    let gap = job.last_poll.map(|last| now.duration_since(last));
    job.last_poll = Some(now);
    let ready_urls = job.urls.clone();
    if polls == 1 {
        ledger.speech.requests.push(TtsRecord {
            token: token.to_owned(),
            msg_id: msg_id.to_owned(),
            timbre: timbre.to_owned(),
            text: message.content.clone(),
        });
    }
    let pending_polls = ledger.speech.pending_polls.unwrap_or(DEFAULT_TTS_PENDING_POLLS);
    Ok(TtsPoll {
        text: message.content,
        mismatch,
        gap,
        ready_urls,
        pending: ledger.speech.never_ready || polls <= pending_polls,
    })
}

/// The parts `text` is spoken in, with their durations: one part, or two halves (by
/// characters) when it is long; the durations add up to [`audio::speech_duration_for`].
pub(crate) fn speech_parts(text: &str) -> Vec<(String, Duration)> {
    let total = audio::speech_duration_for(text);
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= SPLIT_ABOVE_CHARS {
        return vec![(text.to_owned(), total)];
    }
    let half = chars.len() / 2;
    let first = Duration::from_millis(u64::try_from(half).unwrap_or(0) * SPEECH_MS_PER_CHAR);
    vec![
        (chars[..half].iter().collect(), first),
        (chars[half..].iter().collect(), total.saturating_sub(first)),
    ]
}

/// Encodes the speech of `text` in `voice`, stores the MP3s and notes their URLs on the job.
async fn make_speech(state: &Arc<SimState>, msg_id: &str, text: &str, voice: &str) -> Result<Vec<String>, String> {
    let durations: Vec<Duration> = speech_parts(text).into_iter().map(|(_, d)| d).collect();
    let frequency = audio::voice_frequency(voice);
    let files = tokio::task::spawn_blocking(move || {
        durations
            .into_iter()
            .map(|duration| {
                let tone = audio::sine_tone(duration, frequency, SPEECH_SAMPLE_RATE);
                audio::encode_mp3(&tone, SPEECH_SAMPLE_RATE)
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|err| format!("the encoding task failed: {err}"))??;
    let mut urls = Vec::with_capacity(files.len());
    let mut ledger = state.ledger();
    for mp3 in files {
        let id = state.new_id();
        urls.push(format!("{}{AUDIO_PREFIX}{id}.mp3", state.oss_endpoint));
        let file = AudioFile {
            made: Instant::now(),
            bytes: mp3,
        };
        ledger.speech.audio_files.insert(id, file);
    }
    if let Some(job) = ledger.speech.jobs.get_mut(msg_id) {
        job.urls = Some(urls.clone());
    }
    Ok(urls)
}

/// `GET /__audio/<id>.mp3`: the MP3, to a client whose `Referer` is the web app's.
pub(crate) fn audio_file(state: &Arc<SimState>, req: Request) -> Response {
    let path = req.uri().path();
    let expected = format!("{}/", state.profile.origin);
    let referer = req.header("Referer");
    if referer != Some(expected.as_str()) {
        state.violation(format!(
            "{} {path}: header Referer={referer:?}, the audio CDN expects {expected:?}",
            req.method()
        ));
        return Response::builder().status(StatusCode::FORBIDDEN).body("forbidden");
    }
    let id = path.trim_start_matches(AUDIO_PREFIX).strip_suffix(".mp3").unwrap_or("");
    let bytes = state.ledger().speech.audio_files.get(id).map(|file| file.bytes.clone());
    match bytes {
        Some(bytes) => Response::builder().content_type("audio/mpeg").body(bytes),
        None => Response::builder().status(StatusCode::NOT_FOUND).body("not found"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_text_is_spoken_in_two_parts_that_add_up() {
        let text = "海螺收到：这是一段超过二十个字的回答，需要分成两段来读。";
        let parts = speech_parts(text);
        assert_eq!(parts.len(), 2);
        assert_eq!(format!("{}{}", parts[0].0, parts[1].0), text);
        assert_eq!(parts[0].1 + parts[1].1, audio::speech_duration_for(text));
        assert_eq!(speech_parts("海螺收到：短").len(), 1);
    }
}
