//! The OSS V1 header signature (`Authorization: OSS <accessKeyId>:<signature>`): the
//! `StringToSign` of a request and its HMAC-SHA1 under the STS secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// What an OSS V1 signature covers.
pub(crate) struct OssSignedRequest<'a> {
    /// The HTTP method, e.g. `PUT`.
    pub verb: &'a str,
    /// The `Content-MD5` header, empty when absent.
    pub content_md5: &'a str,
    /// The `Content-Type` header, empty when absent.
    pub content_type: &'a str,
    /// The `Date` header.
    pub date: &'a str,
    /// Every `x-oss-*` header as sent (any case, any order, untrimmed values).
    pub oss_headers: Vec<(String, String)>,
    /// `CanonicalizedResource`: `/<bucket>/<key>` with the key percent-decoded.
    pub resource: &'a str,
}

/// The V1 `StringToSign`: `VERB\nContent-MD5\nContent-Type\nDate\n`, then the canonicalized
/// `x-oss-*` headers (lowercase names, sorted, trimmed values, one `name:value\n` each), then the
/// canonicalized resource.
pub(crate) fn oss_string_to_sign(request: &OssSignedRequest<'_>) -> String {
    let mut headers: Vec<(String, String)> = request
        .oss_headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    headers.sort();
    let canonical_headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    format!(
        "{}\n{}\n{}\n{}\n{canonical_headers}{}",
        request.verb, request.content_md5, request.content_type, request.date, request.resource
    )
}

/// `base64(HMAC-SHA1(secret, string_to_sign))`.
pub(crate) fn oss_signature(secret: &str, string_to_sign: &str) -> Option<String> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(string_to_sign.as_bytes());
    Some(BASE64.encode(mac.finalize().into_bytes()))
}

/// Whether `sent` is the signature of `string_to_sign` under `secret`.
pub(crate) fn verify_oss_signature(secret: &str, string_to_sign: &str, sent: &str) -> bool {
    oss_signature(secret, string_to_sign).is_some_and(|expected| expected == sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Alibaba's documented example (also the test vector of its SDKs). The author header is
    /// `foo@bar.com`: with `foo@example.com` the same secret signs `fV5fq7DPwNbrrig7nvUSZIVyruI=`.
    fn alibaba_example() -> OssSignedRequest<'static> {
        OssSignedRequest {
            verb: "PUT",
            content_md5: "ODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=",
            content_type: "text/html",
            date: "Thu, 17 Nov 2005 18:49:58 GMT",
            oss_headers: vec![
                ("X-OSS-Meta-Author".to_owned(), "foo@bar.com".to_owned()),
                ("x-oss-magic".to_owned(), " abracadabra ".to_owned()),
            ],
            resource: "/oss-example/nelson",
        }
    }

    #[test]
    fn the_signature_matches_alibabas_documented_example() {
        let string_to_sign = oss_string_to_sign(&alibaba_example());
        assert_eq!(
            string_to_sign,
            "PUT\nODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=\ntext/html\nThu, 17 Nov 2005 18:49:58 GMT\n\
             x-oss-magic:abracadabra\nx-oss-meta-author:foo@bar.com\n/oss-example/nelson"
        );
        let secret = "OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV";
        assert_eq!(
            oss_signature(secret, &string_to_sign).as_deref(),
            Some("26NBxoKdsyly4EDv6inkoDft/yA=")
        );
        assert!(verify_oss_signature(
            secret,
            &string_to_sign,
            "26NBxoKdsyly4EDv6inkoDft/yA="
        ));
        assert!(!verify_oss_signature(
            "wrong",
            &string_to_sign,
            "26NBxoKdsyly4EDv6inkoDft/yA="
        ));
    }

    #[test]
    fn without_md5_and_oss_headers_the_string_to_sign_keeps_its_empty_lines() {
        let request = OssSignedRequest {
            verb: "PUT",
            content_md5: "",
            content_type: "",
            date: "Thu, 17 Nov 2005 18:49:58 GMT",
            oss_headers: Vec::new(),
            resource: "/b/k",
        };
        assert_eq!(
            oss_string_to_sign(&request),
            "PUT\n\n\nThu, 17 Nov 2005 18:49:58 GMT\n/b/k"
        );
    }
}
