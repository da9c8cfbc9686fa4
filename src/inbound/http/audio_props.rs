//! Property tests of the transcription form (poem's multipart parser under our derive):
//! any body is a form or a parse error, never a panic; a well-formed form gives back its
//! file's bytes and name and its text fields as sent.

use poem_openapi::payload::ParsePayload;
use proptest::prelude::*;

use super::*;

const BOUNDARY: &str = "XyZzY0123";

/// Parses `body` as the transcription form.
fn parse(body: Vec<u8>, content_type: &str) -> poem::Result<TranscriptionForm> {
    let request = poem::Request::builder().content_type(content_type).body(body);
    let (request, mut body) = request.split();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| poem::Error::from_string(error.to_string(), StatusCode::INTERNAL_SERVER_ERROR))?;
    runtime.block_on(TranscriptionForm::from_request(&request, &mut body))
}

/// `(name, Some(file name) for a file, bytes)` fields as a multipart body.
fn form(fields: &[(String, Option<String>, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file_name, bytes) in fields {
        body.extend_from_slice(format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes());
        if let Some(file_name) = file_name {
            body.extend_from_slice(format!("; filename=\"{file_name}\"\r\nContent-Type: audio/wav").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

fn field() -> impl Strategy<Value = (String, Option<String>, Vec<u8>)> {
    let name = proptest::sample::select(
        &[
            "file",
            "model",
            "language",
            "prompt",
            "temperature",
            "response_format",
            "x",
        ][..],
    );
    (
        name,
        proptest::option::of("[a-z0-9._-]{1,12}"),
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..64),
            "\\PC{0,32}".prop_map(String::into_bytes)
        ],
    )
        .prop_map(|(name, file_name, bytes)| (name.to_owned(), file_name, bytes))
}

proptest! {

    #[test]
    fn any_body_is_a_form_or_an_error(
        body in proptest::collection::vec(any::<u8>(), 0..1024),
        boundary in any::<bool>(),
    ) {
        let content_type = if boundary { format!("multipart/form-data; boundary={BOUNDARY}") } else { "multipart/form-data".into() };
        let _ = parse(body, &content_type);
    }

    #[test]
    fn any_mix_of_fields_is_a_form_or_an_error(fields in proptest::collection::vec(field(), 0..6)) {
        let parsed = parse(form(&fields), &format!("multipart/form-data; boundary={BOUNDARY}"));
        let files = fields.iter().filter(|(name, _, _)| name == "file").count();
        if let Ok(parsed) = parsed {
            prop_assert_eq!(files, 1, "a form holds exactly one file");
            let (_, file_name, bytes) = fields.iter().find(|(name, _, _)| name == "file").cloned().unwrap_or_default();
            prop_assert_eq!(parsed.file.file_name(), file_name.as_deref());
            prop_assert_eq!(parsed.file.size(), bytes.len());
        } else {
            let known: Vec<&str> = fields.iter().map(|(name, _, _)| name.as_str()).filter(|name| *name != "x").collect();
            let repeated = known.iter().collect::<std::collections::HashSet<_>>().len() < known.len();
            let unreadable = fields.iter().any(|(name, _, bytes)| {
                let text = std::str::from_utf8(bytes);
                let unknown_format = name == "response_format"
                    && !text.is_ok_and(|text| ["json", "text", "verbose_json", "srt", "vtt"].contains(&text));
                !matches!(name.as_str(), "file" | "x") && (text.is_err() || name == "temperature" || unknown_format)
            });
            prop_assert!(
                files != 1 || repeated || unreadable,
                "a form with one file, UTF-8 text fields and no repeats was refused: {fields:?}"
            );
        }
    }

    #[test]
    fn a_well_formed_form_gives_back_what_was_sent(
        audio in proptest::collection::vec(any::<u8>(), 0..2048),
        file_name in "[a-z0-9_-]{1,12}\\.(wav|mp3|m4a)",
        model in "\\PC{0,40}",
        prompt in "\\PC{0,200}",
    ) {
        let fields = vec![
            ("model".to_owned(), None, model.clone().into_bytes()),
            ("file".to_owned(), Some(file_name.clone()), audio.clone()),
            ("prompt".to_owned(), None, prompt.clone().into_bytes()),
        ];
        let parsed = parse(form(&fields), &format!("multipart/form-data; boundary={BOUNDARY}"))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(parsed.model.as_deref(), Some(model.as_str()));
        prop_assert_eq!(parsed.prompt.as_deref(), Some(prompt.as_str()));
        prop_assert_eq!(parsed.file.file_name(), Some(file_name.as_str()));
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let bytes = runtime.block_on(parsed.file.into_vec())?;
        prop_assert_eq!(bytes, audio);
    }
}
