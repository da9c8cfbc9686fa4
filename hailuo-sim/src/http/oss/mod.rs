//! The simulated Alibaba Cloud OSS (protocol §7, step 3), served path-style on the simulator's
//! own listener: `PUT /<bucket>/<key>` checked against the V1 header signature and the STS
//! credentials `request_policy` handed out, and an unsigned `HEAD`. Failures answer like OSS
//! (an HTTP status and an XML `<Error>`) and are recorded as violations.

use std::time::{Duration, Instant, SystemTime};

mod signature;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};
use percent_encoding::percent_decode_str;
use poem::http::{Method, StatusCode};
use poem::{Request, Response};

use crate::ledger::{OSS_BUCKET, OssObject, StsCredential};
use crate::state::SimState;
use signature::{OssSignedRequest, oss_string_to_sign, verify_oss_signature};

/// How far the `Date` header may be from the simulator's clock (OSS allows 15 minutes).
const DATE_TOLERANCE: Duration = Duration::from_secs(15 * 60);

/// An OSS error answer: status, `<Code>`, `<Message>`, and whether the client broke the rules.
struct OssRejection {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The `StringToSign` the simulator computed, returned on `SignatureDoesNotMatch` as OSS does.
    string_to_sign: Option<String>,
    violation: bool,
}

impl OssRejection {
    /// A refusal the client caused.
    fn violation(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            string_to_sign: None,
            violation: true,
        }
    }

    fn access_denied(message: impl Into<String>) -> Self {
        Self::violation(StatusCode::FORBIDDEN, "AccessDenied", message)
    }
}

/// Handles `PUT` and `HEAD` on `/<bucket>/<key>`.
pub(crate) async fn object(state: &SimState, mut req: Request) -> Response {
    let path = req.uri().path().to_owned();
    let located = locate(&path);
    if req.method() == Method::HEAD {
        return match located {
            Ok((bucket, key)) => head(state, &bucket, &key),
            Err(_) => oss_error_response(state, &OssRejection::access_denied("not an object"), true),
        };
    }
    // Read the whole body first, so that every answer, even a refusal, is a clean one.
    let body = match req.take_body().into_vec().await {
        Ok(body) => body,
        Err(err) => {
            // A sender may give up mid-body (its source failed); as with OSS, nothing is
            // stored, and no rule was broken.
            let rejection = OssRejection {
                violation: false,
                ..OssRejection::violation(
                    StatusCode::BAD_REQUEST,
                    "IncompleteBody",
                    format!("the body was cut off: {err}"),
                )
            };
            return refuse_put(state, &req, rejection);
        }
    };
    if state.ledger().faults.take_failing_upload() {
        let failure = OssRejection {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "InternalError",
            message: "We encountered an internal error. Please try again.".to_owned(),
            string_to_sign: None,
            violation: false,
        };
        return oss_error_response(state, &failure, false);
    }
    let (bucket, key) = match located {
        Ok(located) => located,
        Err(rejection) => return refuse_put(state, &req, rejection),
    };
    match admit_put(state, &req, &bucket, &key, &body) {
        Ok(credential) => {
            let etag = format!("\"{}\"", hex::encode_upper(Md5::digest(&body)));
            let object = OssObject {
                bytes: body,
                content_type: req.header("Content-Type").unwrap_or("").to_owned(),
                token: credential.token,
            };
            state.ledger().bucket.objects.insert((bucket, key), object);
            Response::builder()
                .header("ETag", etag)
                .header("x-oss-request-id", request_id())
                .body(Vec::new())
        }
        Err(rejection) => refuse_put(state, &req, rejection),
    }
}

/// Splits `/<bucket>/<key>` and percent-decodes the key.
fn locate(path: &str) -> Result<(String, String), OssRejection> {
    let (bucket, raw_key) = path
        .trim_start_matches('/')
        .split_once('/')
        .filter(|(bucket, key)| !bucket.is_empty() && !key.is_empty())
        .ok_or_else(|| OssRejection::access_denied(format!("{path} names no object (path-style /<bucket>/<key>)")))?;
    let key = percent_decode_str(raw_key).decode_utf8().map_err(|_| {
        OssRejection::violation(
            StatusCode::BAD_REQUEST,
            "InvalidObjectName",
            format!("object key {raw_key:?} is not percent-encoded UTF-8"),
        )
    })?;
    Ok((bucket.to_owned(), key.into_owned()))
}

/// `HEAD /<bucket>/<key>`: the object's size, type and ETag, or 404.
fn head(state: &SimState, bucket: &str, key: &str) -> Response {
    let ledger = state.ledger();
    match ledger.bucket.objects.get(&(bucket.to_owned(), key.to_owned())) {
        Some(object) => Response::builder()
            .header("Content-Length", object.bytes.len())
            .header("Content-Type", object.content_type.clone())
            .header("ETag", format!("\"{}\"", hex::encode_upper(Md5::digest(&object.bytes))))
            .header("x-oss-request-id", request_id())
            .body(Vec::new()),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .header("x-oss-request-id", request_id())
            .body(Vec::new()),
    }
}

/// Every check of a `PUT`; the credential that signed it when it passes.
fn admit_put(
    state: &SimState,
    req: &Request,
    bucket: &str,
    key: &str,
    body: &[u8],
) -> Result<StsCredential, OssRejection> {
    if bucket != OSS_BUCKET {
        return Err(OssRejection::violation(
            StatusCode::NOT_FOUND,
            "NoSuchBucket",
            format!("bucket {bucket:?} does not exist; request_policy named {OSS_BUCKET:?}"),
        ));
    }
    if let Some(query) = req.uri().query() {
        return Err(OssRejection::violation(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            format!("a PutObject carries no query string, got {query:?}"),
        ));
    }
    let authorization = req
        .header("Authorization")
        .ok_or_else(|| OssRejection::access_denied("header Authorization missing"))?;
    let (access_key_id, signature) = authorization
        .strip_prefix("OSS ")
        .and_then(|rest| rest.split_once(':'))
        .ok_or_else(|| {
            OssRejection::access_denied(format!(
                "Authorization {authorization:?} is not \"OSS <accessKeyId>:<signature>\""
            ))
        })?;
    let credential = state
        .ledger()
        .bucket
        .credentials
        .get(access_key_id)
        .cloned()
        .ok_or_else(|| {
            OssRejection::violation(
                StatusCode::FORBIDDEN,
                "InvalidAccessKeyId",
                format!("accessKeyId {access_key_id:?} was never issued by request_policy"),
            )
        })?;
    if Instant::now() > credential.expires {
        return Err(OssRejection::violation(
            StatusCode::FORBIDDEN,
            "SecurityTokenExpired",
            format!("the STS credentials {access_key_id} have expired; ask request_policy again"),
        ));
    }
    match req.header("x-oss-security-token") {
        Some(sent) if sent == credential.security_token => {}
        Some(_) => {
            return Err(OssRejection::violation(
                StatusCode::FORBIDDEN,
                "InvalidSecurityToken",
                format!("x-oss-security-token is not the securityToken issued with {access_key_id}"),
            ));
        }
        None => {
            return Err(OssRejection::violation(
                StatusCode::FORBIDDEN,
                "InvalidSecurityToken",
                "header x-oss-security-token missing",
            ));
        }
    }
    let date = req
        .header("Date")
        .ok_or_else(|| OssRejection::access_denied("header Date missing"))?;
    check_date(date)?;

    let oss_headers = req
        .headers()
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("x-oss-"))
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or("");
            (name.as_str().to_owned(), value.to_owned())
        })
        .collect();
    let content_md5 = req.header("Content-MD5").unwrap_or("");
    let content_type = req.header("Content-Type").unwrap_or("");
    let resource = format!("/{bucket}/{key}");
    let string_to_sign = oss_string_to_sign(&OssSignedRequest {
        verb: "PUT",
        content_md5,
        content_type,
        date,
        oss_headers,
        resource: &resource,
    });
    if !verify_oss_signature(&credential.secret, &string_to_sign, signature) {
        return Err(OssRejection {
            string_to_sign: Some(string_to_sign.clone()),
            ..OssRejection::violation(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                format!("signature {signature:?} does not sign {string_to_sign:?}"),
            )
        });
    }
    if content_type.is_empty() {
        return Err(OssRejection::violation(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "header Content-Type missing; the upload names the file's MIME type",
        ));
    }
    let inside_dir = key
        .strip_prefix(credential.dir.as_str())
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|name| !name.is_empty());
    if !inside_dir {
        return Err(OssRejection::access_denied(format!(
            "key {key:?} lies outside the credentials' dir {:?}",
            credential.dir
        )));
    }
    if !content_md5.is_empty() {
        let actual = BASE64.encode(Md5::digest(body));
        if actual != content_md5 {
            return Err(OssRejection::violation(
                StatusCode::BAD_REQUEST,
                "InvalidDigest",
                format!("Content-MD5 {content_md5:?} does not match the body ({actual})"),
            ));
        }
    }
    Ok(credential)
}

/// `Date`: an RFC 1123 (IMF-fixdate) time within 15 minutes of now.
fn check_date(date: &str) -> Result<(), OssRejection> {
    let sent = httpdate::parse_http_date(date)
        .ok()
        .filter(|sent| httpdate::fmt_http_date(*sent) == date)
        .ok_or_else(|| {
            OssRejection::access_denied(format!(
                "Date {date:?} is not an RFC 1123 date such as \"Thu, 17 Nov 2005 18:49:58 GMT\""
            ))
        })?;
    let now = SystemTime::now();
    let skew = now
        .duration_since(sent)
        .or_else(|_| sent.duration_since(now))
        .unwrap_or_default();
    if skew > DATE_TOLERANCE {
        return Err(OssRejection::violation(
            StatusCode::FORBIDDEN,
            "RequestTimeTooSkewed",
            format!("Date {date:?} is more than 15 minutes from now"),
        ));
    }
    Ok(())
}

/// Answers a refused `PUT`, recording its violation.
fn refuse_put(state: &SimState, req: &Request, rejection: OssRejection) -> Response {
    if rejection.violation {
        state.violation(format!(
            "{} {} (OSS {}): {}",
            req.method(),
            req.uri().path(),
            rejection.code,
            rejection.message
        ));
    }
    oss_error_response(state, &rejection, false)
}

/// The OSS error answer: the status and, unless `bodiless` (HEAD), the XML `<Error>`.
fn oss_error_response(state: &SimState, rejection: &OssRejection, bodiless: bool) -> Response {
    let id = request_id();
    let builder = Response::builder()
        .status(rejection.status)
        .header("x-oss-request-id", id.clone());
    if bodiless {
        return builder.body(Vec::new());
    }
    let string_to_sign = rejection
        .string_to_sign
        .as_deref()
        .map(|text| format!("  <StringToSign>{}</StringToSign>\n", xml_escape(text)))
        .unwrap_or_default();
    let host = state.oss_endpoint.trim_start_matches("http://");
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n  <Code>{}</Code>\n  <Message>{}</Message>\n  \
         <RequestId>{id}</RequestId>\n  <HostId>{}</HostId>\n{string_to_sign}</Error>\n",
        rejection.code,
        xml_escape(&rejection.message),
        xml_escape(host),
    );
    builder.content_type("application/xml").body(xml)
}

/// Escapes text for an XML element.
fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A fresh `x-oss-request-id`: 24 uppercase hex digits.
fn request_id() -> String {
    hex::encode_upper(rand::random::<[u8; 12]>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_imf_fixdates_near_now_are_accepted() {
        assert!(check_date(&httpdate::fmt_http_date(SystemTime::now())).is_ok());
        assert!(check_date("Thu, 17 Nov 2005 18:49:58 GMT").is_err());
        assert!(check_date("Thursday, 17-Nov-05 18:49:58 GMT").is_err());
        assert!(check_date("2005-11-17T18:49:58Z").is_err());
    }

    #[test]
    fn object_paths_are_split_and_decoded() {
        let (bucket, key) = locate("/hailuo-sim/a/b/%E6%B5%B7.png").ok().unwrap();
        assert_eq!((bucket.as_str(), key.as_str()), ("hailuo-sim", "a/b/海.png"));
        assert!(locate("/hailuo-sim").is_err());
        assert!(locate("/hailuo-sim/").is_err());
    }
}
