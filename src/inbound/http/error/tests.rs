//! The mapping of every use case's error to what clients see, and the cutting of long
//! framework messages.

use super::*;

#[test]
fn a_parse_error_quoting_a_huge_value_is_cut() {
    let huge = "x".repeat(5_000_000);
    let error = poem::Error::from_string(format!("found {huge}"), StatusCode::BAD_REQUEST);
    let message = ApiError::from_parse_error(&error).body.error.message;
    assert!(message.chars().count() < 600, "{} chars", message.chars().count());
    assert!(message.ends_with("… (cut)"));
    let framework = ApiError::from_framework(&error).body.error.message;
    assert!(framework.chars().count() < 600);
}

/// The status, `type`, `code` and `param` an error is sent with.
fn seen(error: impl Into<ApiError>) -> (u16, String, Option<String>, Option<String>) {
    let error = error.into();
    let detail = error.body.error;
    (
        error.status.as_u16(),
        detail.kind.as_str().to_owned(),
        Some(detail.code.as_str().to_owned()),
        detail.param,
    )
}

fn expected(
    status: u16,
    kind: ErrorType,
    code: ErrorCode,
    param: Option<&str>,
) -> (u16, String, Option<String>, Option<String>) {
    (
        status,
        kind.as_str().to_owned(),
        Some(code.as_str().to_owned()),
        param.map(str::to_owned),
    )
}

#[test]
fn each_use_case_error_is_sent_with_its_status_type_code_and_param() {
    use ErrorCode as C;
    use ErrorType as T;
    let text = || "why".to_owned();
    let cases = [
        (
            seen(RunnerError::NoAccounts),
            expected(401, T::AuthenticationError, C::InvalidApiKey, None),
        ),
        (
            seen(RunnerError::AccountsRejected { message: text() }),
            expected(401, T::AuthenticationError, C::AccountRejected, None),
        ),
        (
            seen(RunnerError::Overloaded),
            expected(503, T::ServerError, C::ServerOverloaded, None),
        ),
        (
            seen(RunnerError::AccountsBusy),
            expected(429, T::RateLimitError, C::AccountsBusy, None),
        ),
        (
            seen(RunnerError::Refused { message: text() }),
            expected(502, T::UpstreamError, C::UpstreamRefused, None),
        ),
        (
            seen(RunnerError::AccountsRateLimited { message: text() }),
            expected(429, T::RateLimitError, C::AccountRateLimited, None),
        ),
        (
            seen(RunnerError::ProtocolRefused { message: text() }),
            expected(502, T::UpstreamError, C::UpstreamRefused, None),
        ),
        (
            seen(RunnerError::Unavailable { message: text() }),
            expected(502, T::UpstreamError, C::UpstreamUnavailable, None),
        ),
        (
            seen(RunnerError::Timeout),
            expected(504, T::TimeoutError, C::UpstreamTimeout, None),
        ),
        (
            seen(RunnerError::TokenStore),
            expected(500, T::ServerError, C::InternalError, None),
        ),
        (
            seen(ChatError::InvalidRequest(text())),
            expected(400, T::InvalidRequestError, C::InvalidRequest, Some("messages")),
        ),
        (
            seen(ChatError::TooManyAudioParts { count: 3, max: 2 }),
            expected(400, T::InvalidRequestError, C::InvalidRequest, Some("messages")),
        ),
        (
            seen(ChatError::InvalidAttachment(text())),
            expected(400, T::InvalidRequestError, C::InvalidAttachment, Some("messages")),
        ),
        (
            seen(ChatError::AttachmentTooLarge(text())),
            expected(413, T::InvalidRequestError, C::AttachmentTooLarge, Some("messages")),
        ),
        (
            seen(ChatError::UnsupportedAttachment(text())),
            expected(400, T::InvalidRequestError, C::UnsupportedFileType, Some("messages")),
        ),
        (
            seen(ChatError::ContentFiltered(text())),
            expected(400, T::InvalidRequestError, C::ContentFiltered, Some("messages")),
        ),
        (
            seen(ChatError::PromptTooLong(text())),
            expected(400, T::InvalidRequestError, C::ContextLengthExceeded, Some("messages")),
        ),
        (
            seen(ChatError::ConversationNotFound),
            expected(
                404,
                T::InvalidRequestError,
                C::ConversationNotFound,
                Some("conversation_id"),
            ),
        ),
        (
            seen(ChatError::SessionStore),
            expected(500, T::ServerError, C::InternalError, None),
        ),
        (
            seen(ChatError::Run(RunnerError::AccountsBusy)),
            expected(429, T::RateLimitError, C::AccountsBusy, None),
        ),
        (
            seen(SpeechError::InvalidRequest(text())),
            expected(400, T::InvalidRequestError, C::InvalidRequest, None),
        ),
        (
            seen(SpeechError::ContentFiltered(text())),
            expected(400, T::InvalidRequestError, C::ContentFiltered, Some("input")),
        ),
        (
            seen(SpeechError::InputTooLong(text())),
            expected(400, T::InvalidRequestError, C::InputTooLong, Some("input")),
        ),
        (
            seen(SpeechError::UnknownVoice {
                voice: "nobody".into(),
                message: text(),
            }),
            expected(400, T::InvalidRequestError, C::UnknownVoice, Some("voice")),
        ),
        (
            seen(SpeechError::UnrenderableAudio { message: text() }),
            expected(502, T::UpstreamError, C::UpstreamUnavailable, None),
        ),
        (
            seen(SpeechError::Codec),
            expected(500, T::ServerError, C::InternalError, None),
        ),
        (
            seen(TranscriptionError::InvalidAudio(text())),
            expected(400, T::InvalidRequestError, C::InvalidAudio, Some("file")),
        ),
        (
            seen(TranscriptionError::AudioTooLong(text())),
            expected(413, T::InvalidRequestError, C::AudioTooLong, Some("file")),
        ),
        (
            seen(TranscriptionError::Codec),
            expected(500, T::ServerError, C::InternalError, None),
        ),
    ];
    for (seen, expected) in cases {
        assert_eq!(seen, expected);
    }
}

#[test]
fn audio_that_cannot_be_heard_is_sent_naming_its_part() {
    use ErrorCode as C;
    use ErrorType as T;
    let at = PartPosition { message: 2, part: 1 };
    let place = Some("messages[2].content[1].input_audio");
    let audio = |error| seen(ChatError::Audio { at, error });
    assert_eq!(
        audio(TranscriptionError::InvalidAudio("x".into())),
        expected(400, T::InvalidRequestError, C::InvalidAudio, place)
    );
    assert_eq!(
        audio(TranscriptionError::AudioTooLong("x".into())),
        expected(413, T::InvalidRequestError, C::AudioTooLong, place)
    );
    assert_eq!(
        audio(TranscriptionError::Unavailable("x".into())),
        expected(400, T::InvalidRequestError, C::InvalidRequest, place)
    );
    assert_eq!(
        audio(TranscriptionError::Codec),
        expected(500, T::ServerError, C::InternalError, None)
    );
    assert_eq!(
        audio(TranscriptionError::Run(RunnerError::AccountsBusy)),
        expected(429, T::RateLimitError, C::AccountsBusy, None)
    );
}

#[test]
fn an_overloaded_server_asks_to_retry_and_internal_failures_say_nothing_more() {
    assert_eq!(
        ApiError::from(RunnerError::Overloaded).retry_after,
        Some(OVERLOADED_RETRY_AFTER_SECS)
    );
    assert_eq!(
        ApiError::from(ChatError::Run(RunnerError::AccountsBusy)).retry_after,
        Some(BUSY_RETRY_AFTER_SECS)
    );
    assert_eq!(
        ApiError::from(RunnerError::AccountsRateLimited { message: "x".into() }).retry_after,
        Some(RATE_LIMITED_RETRY_AFTER_SECS)
    );
    for error in [
        ApiError::from(RunnerError::TokenStore),
        ApiError::from(ChatError::SessionStore),
        ApiError::from(SpeechError::Codec),
        ApiError::from(TranscriptionError::Codec),
    ] {
        assert_eq!(error.body.error.message, "internal error");
    }
}

#[test]
fn a_short_message_is_kept_whole_and_multibyte_text_is_cut_on_a_boundary() {
    assert_eq!(clip("bad JSON"), "bad JSON");
    let cut = clip(&"海".repeat(800));
    assert!(cut.starts_with(&"海".repeat(MAX_MESSAGE_CHARS)));
    assert!(cut.ends_with("… (cut)"));
}
