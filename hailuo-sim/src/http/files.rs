//! The file side of the Hailuo API (protocol §7): `request_policy` hands out fresh STS
//! credentials for the simulated OSS, `policy_callback` turns an uploaded object into a
//! `fileID`, and [`check_form`] holds a chat's `form` against the files confirmed that way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use poem::{Request, Response};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::admission::{admit_json_body, admit_json_call, refuse, success};
use crate::ledger::{OSS_BUCKET, StsCredential};
use crate::records::{FormFile, SimFile};
use crate::refusal::RefusedCall;
use crate::state::SimState;
use crate::verify::Rejection;

/// How long STS credentials stay valid.
const CREDENTIAL_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// `formType` of an image (`image/*`) in the chat `form`.
const FORM_IMAGE: u64 = 2;
/// `formType` of any other file.
const FORM_DOCUMENT: u64 = 6;
/// `formType` of the closing text entry.
const FORM_TEXT: u64 = 1;

/// `GET /v1/api/files/request_policy` → fresh
/// `{accessKeyId, accessKeySecret, bucketName, dir, endpoint, securityToken}`.
pub(crate) async fn request_policy(state: &Arc<SimState>, mut req: Request) -> Response {
    let caller = match admit_json_call(state, &mut req).await {
        Ok(caller) => caller,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let access_key_id = format!("STS.NT{}", random_alphanumeric(24));
    let secret = random_alphanumeric(44);
    let mut token_bytes = vec![0_u8; 240];
    rand::rng().fill(token_bytes.as_mut_slice());
    // Real STS tokens are long base64 text (with `+`, `/`, `=`): sent verbatim in a header.
    let security_token = format!("CAIS{}", BASE64.encode(&token_bytes));
    let user_number = state.new_id();
    let mut ledger = state.ledger();
    *ledger.bucket.policy_requests.entry(caller.token.clone()).or_default() += 1;
    let dir = ledger
        .bucket
        .upload_dirs
        .entry(caller.token.clone())
        .or_insert_with(|| format!("cdn-yingshi-ai-com/prod/sim/user/{user_number}"))
        .clone();
    ledger.bucket.credentials.insert(
        access_key_id.clone(),
        StsCredential {
            token: caller.token,
            secret: secret.clone(),
            security_token: security_token.clone(),
            dir: dir.clone(),
            expires: Instant::now() + CREDENTIAL_LIFETIME,
        },
    );
    drop(ledger);
    success(json!({
        "accessKeyId": access_key_id,
        "accessKeySecret": secret,
        "bucketName": OSS_BUCKET,
        "dir": dir,
        "endpoint": state.oss_endpoint,
        "securityToken": security_token,
    }))
}

/// `n` random ASCII letters and digits.
fn random_alphanumeric(n: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}

/// The body of `policy_callback`: exactly these fields, all strings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PolicyCallback {
    file_name: String,
    origin_file_name: String,
    dir: String,
    endpoint: String,
    bucket_name: String,
    size: String,
    mime_type: String,
}

/// `POST /v1/api/files/policy_callback`: confirms an object this token uploaded → `{"fileID"}`.
pub(crate) async fn policy_callback(state: &Arc<SimState>, mut req: Request) -> Response {
    let outcome = match admit_json_body(state, &mut req).await {
        Ok((caller, body)) => confirm_upload(state, &caller.token, &body),
        Err(rejection) => Err(rejection),
    };
    match outcome {
        Ok(file_id) => success(json!({"fileID": file_id})),
        Err(rejection) => refuse(state, &req, rejection),
    }
}

/// Checks a callback against the stored object and remembers the file; its new `fileID`.
fn confirm_upload(state: &SimState, token: &str, body: &str) -> Result<String, Rejection> {
    let callback: PolicyCallback = serde_json::from_str(body).map_err(|err| {
        Rejection::bad_parameter(format!(
            "policy_callback body {body:?} is not {{fileName, originFileName, dir, endpoint, bucketName, \
             size, mimeType}} of strings: {err}"
        ))
    })?;
    for (name, value) in [
        ("fileName", &callback.file_name),
        ("originFileName", &callback.origin_file_name),
        ("dir", &callback.dir),
        ("mimeType", &callback.mime_type),
    ] {
        if value.is_empty() {
            return Err(Rejection::bad_parameter(format!("policy_callback {name} is empty")));
        }
    }
    if callback.file_name.contains('/') {
        return Err(Rejection::bad_parameter(format!(
            "policy_callback fileName {:?} must be the bare name, without the dir",
            callback.file_name
        )));
    }
    let size: usize = callback
        .size
        .parse()
        .ok()
        .filter(|_| callback.size.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            Rejection::bad_parameter(format!("policy_callback size {:?} is not a byte count", callback.size))
        })?;
    if callback.bucket_name != OSS_BUCKET {
        return Err(Rejection::bad_parameter(format!(
            "policy_callback bucketName {:?}, request_policy said {OSS_BUCKET:?}",
            callback.bucket_name
        )));
    }
    if callback.endpoint != state.oss_endpoint {
        return Err(Rejection::bad_parameter(format!(
            "policy_callback endpoint {:?}, request_policy said {:?}",
            callback.endpoint, state.oss_endpoint
        )));
    }

    let key = format!("{}/{}", callback.dir, callback.file_name);
    let mut ledger = state.ledger();
    let object = ledger
        .bucket
        .objects
        .get(&(callback.bucket_name.clone(), key.clone()))
        .ok_or_else(|| Rejection::violation(1_300_001, "文件不存在", format!("no object {key:?} was uploaded")))?;
    if object.token != token {
        return Err(Rejection::violation(
            1_300_001,
            "文件不存在",
            format!("object {key:?} was uploaded with another token's credentials"),
        ));
    }
    if object.bytes.len() != size {
        return Err(Rejection::violation(
            1_300_002,
            "文件校验失败",
            format!(
                "policy_callback size {size}, the object holds {} bytes",
                object.bytes.len()
            ),
        ));
    }
    if object.content_type != callback.mime_type {
        return Err(Rejection::violation(
            1_300_002,
            "文件校验失败",
            format!(
                "policy_callback mimeType {:?}, the object was uploaded as {:?}",
                callback.mime_type, object.content_type
            ),
        ));
    }
    let bytes = object.bytes.clone();
    // A refusal of the file comes once the callback is found right; the file is not confirmed.
    if let Some(refusal) = ledger.faults.take_refusal(RefusedCall::FileCallback) {
        return Err(Rejection::refused(refusal.code(), refusal.message()));
    }
    let file = SimFile {
        token: token.to_owned(),
        file_id: state.new_id(),
        file_name: callback.file_name,
        mime: callback.mime_type,
        bytes,
    };
    let file_id = file.file_id.clone();
    ledger.bucket.files.push(file);
    Ok(file_id)
}

/// Checks a chat's `form` (protocol §7, step 5): one entry per file of this token, then the
/// text entry repeating `msg_content`. The files it attaches, in order.
///
/// # Errors
/// A violation ([`Rejection::bad_parameter`]) naming the first deviation.
pub(crate) fn check_form(
    state: &SimState,
    token: &str,
    form: &str,
    msg_content: &str,
) -> Result<Vec<FormFile>, Rejection> {
    let entries: Vec<Value> = serde_json::from_str(form)
        .map_err(|err| Rejection::bad_parameter(format!("form {form:?} is not a JSON array: {err}")))?;
    let Some((text, file_entries)) = entries.split_last() else {
        return Err(Rejection::bad_parameter("form is an empty array"));
    };
    if file_entries.is_empty() {
        return Err(Rejection::bad_parameter(
            "form holds no file entry; a chat without files sends no form",
        ));
    }
    let text = form_entry(text, &["content", "formType", "name"], "the last")?;
    if text.get("formType").and_then(Value::as_u64) != Some(FORM_TEXT) {
        return Err(Rejection::bad_parameter(format!(
            "the last form entry {text:?} needs formType 1 (a number)"
        )));
    }
    if text.get("content").and_then(Value::as_str) != Some(msg_content) {
        return Err(Rejection::bad_parameter(format!(
            "the last form entry's content {:?} differs from msgContent {msg_content:?}",
            text.get("content")
        )));
    }

    let ledger = state.ledger();
    let mut files = Vec::with_capacity(file_entries.len());
    for (index, entry) in file_entries.iter().enumerate() {
        let entry = form_entry(entry, &["content", "fileID", "formType", "name"], &format!("#{index}"))?;
        let (Some(form_type), Some(content), Some(file_id)) = (
            entry.get("formType").and_then(Value::as_u64),
            entry.get("content").and_then(Value::as_str),
            entry.get("fileID").and_then(Value::as_str),
        ) else {
            return Err(Rejection::bad_parameter(format!(
                "form entry #{index} {entry:?} needs a number formType and string content and fileID"
            )));
        };
        let file = ledger
            .bucket
            .files
            .iter()
            .find(|file| file.file_id == file_id)
            .ok_or_else(|| Rejection::bad_parameter(format!("form entry #{index}: fileID {file_id} is unknown")))?;
        if file.token != token {
            return Err(Rejection::bad_parameter(format!(
                "form entry #{index}: fileID {file_id} belongs to another token"
            )));
        }
        if file.file_name != content {
            return Err(Rejection::bad_parameter(format!(
                "form entry #{index}: content {content:?}, but fileID {file_id} is {:?}",
                file.file_name
            )));
        }
        let expected_type = if file.mime.starts_with("image/") {
            FORM_IMAGE
        } else {
            FORM_DOCUMENT
        };
        if form_type != expected_type {
            return Err(Rejection::bad_parameter(format!(
                "form entry #{index}: formType {form_type} for a {} file, expected {expected_type}",
                file.mime
            )));
        }
        files.push(FormFile {
            form_type: u8::try_from(form_type).unwrap_or(u8::MAX),
            file_id: file_id.to_owned(),
            file_name: content.to_owned(),
        });
    }
    Ok(files)
}

/// A form entry: an object with exactly `keys` (sorted) and an empty `name`.
fn form_entry<'a>(entry: &'a Value, keys: &[&str], which: &str) -> Result<&'a Map<String, Value>, Rejection> {
    let object = entry
        .as_object()
        .ok_or_else(|| Rejection::bad_parameter(format!("form entry {which} {entry} is not an object")))?;
    let mut sent: Vec<&str> = object.keys().map(String::as_str).collect();
    sent.sort_unstable();
    if sent != keys {
        return Err(Rejection::bad_parameter(format!(
            "form entry {which} has keys {sent:?}, expected exactly {keys:?}"
        )));
    }
    if object.get("name").and_then(Value::as_str) != Some("") {
        return Err(Rejection::bad_parameter(format!(
            "form entry {which}: name {:?}, expected \"\"",
            object.get("name")
        )));
    }
    Ok(object)
}
