//! The file side of the simulator (protocol §7) against a hand-signed client: request_policy,
//! an OSS PUT signed here by hand, policy_callback and a chat `form`. A clean client leaves no
//! violation; a wrong signature, token, key, size or form entry does.

#![allow(clippy::unwrap_used)]

use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use md5::{Digest, Md5};
use serde_json::{Value, json};
use sha1::Sha1;

use super::protocol_tests::{Browser, final_answer, registered};
use super::*;

/// What `request_policy` handed out.
#[derive(Clone)]
struct Policy {
    access_key_id: String,
    secret: String,
    bucket: String,
    dir: String,
    endpoint: String,
    security_token: String,
}

async fn request_policy(browser: &Browser) -> Policy {
    let answer = browser
        .json(reqwest::Method::GET, "/v1/api/files/request_policy", None)
        .await;
    assert_eq!(answer["statusInfo"]["code"], 0, "{answer}");
    let field = |name: &str| answer["data"][name].as_str().unwrap().to_owned();
    Policy {
        access_key_id: field("accessKeyId"),
        secret: field("accessKeySecret"),
        bucket: field("bucketName"),
        dir: field("dir"),
        endpoint: field("endpoint"),
        security_token: field("securityToken"),
    }
}

/// One OSS upload, signed by hand with the V1 header signature.
struct Upload<'a> {
    policy: &'a Policy,
    key: String,
    body: Vec<u8>,
    mime: &'a str,
    with_md5: bool,
}

impl<'a> Upload<'a> {
    fn new(policy: &'a Policy, name: &str, body: &[u8], mime: &'a str) -> Self {
        Self {
            policy,
            key: format!("{}/{name}", policy.dir),
            body: body.to_vec(),
            mime,
            with_md5: false,
        }
    }

    /// Sends it, signing with `secret` and carrying `security_token`.
    async fn send_as(&self, secret: &str, security_token: &str) -> reqwest::Response {
        let date = httpdate::fmt_http_date(SystemTime::now());
        let md5 = if self.with_md5 {
            BASE64.encode(Md5::digest(&self.body))
        } else {
            String::new()
        };
        let string_to_sign = format!(
            "PUT\n{md5}\n{}\n{date}\nx-oss-security-token:{security_token}\n/{}/{}",
            self.mime, self.policy.bucket, self.key
        );
        let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(string_to_sign.as_bytes());
        let signature = BASE64.encode(mac.finalize().into_bytes());
        let mut request = reqwest::Client::new()
            .put(format!("{}/{}/{}", self.policy.endpoint, self.policy.bucket, self.key))
            .header("Date", date)
            .header("Content-Type", self.mime)
            .header("x-oss-security-token", security_token)
            .header(
                "Authorization",
                format!("OSS {}:{signature}", self.policy.access_key_id),
            )
            .body(self.body.clone());
        if self.with_md5 {
            request = request.header("Content-MD5", md5);
        }
        request.send().await.unwrap()
    }

    async fn send(&self) -> reqwest::Response {
        self.send_as(&self.policy.secret, &self.policy.security_token).await
    }
}

/// `policy_callback` for `name` in the policy's dir, claiming `size` bytes.
async fn confirm(browser: &Browser, policy: &Policy, name: &str, size: usize, mime: &str) -> Value {
    let body = json!({
        "fileName": name,
        "originFileName": name,
        "dir": policy.dir,
        "endpoint": policy.endpoint,
        "bucketName": policy.bucket,
        "size": size.to_string(),
        "mimeType": mime,
    });
    browser
        .json(
            reqwest::Method::POST,
            "/v1/api/files/policy_callback",
            Some(body.to_string()),
        )
        .await
}

/// Uploads and confirms a file; its `fileID`.
async fn attach(browser: &Browser, name: &str, body: &[u8], mime: &str) -> String {
    let policy = request_policy(browser).await;
    let put = Upload::new(&policy, name, body, mime).send().await;
    assert_eq!(put.status(), 200, "{:?}", put.text().await);
    let confirmed = confirm(browser, &policy, name, body.len(), mime).await;
    assert_eq!(confirmed["statusInfo"]["code"], 0, "{confirmed}");
    confirmed["data"]["fileID"].as_str().unwrap().to_owned()
}

fn file_entry(form_type: u8, name: &str, file_id: &str) -> Value {
    json!({"name": "", "formType": form_type, "content": name, "fileID": file_id})
}

fn form(files: &[Value], content: &str) -> String {
    let mut entries = files.to_vec();
    entries.push(json!({"name": "", "formType": 1, "content": content}));
    Value::Array(entries).to_string()
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\nnot really an image";
const PDF: &[u8] = b"%PDF-1.4 a tiny document";

#[tokio::test]
async fn a_clean_client_uploads_confirms_and_attaches_files_without_violations() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-files").await;

    let policy = request_policy(&browser).await;
    assert_eq!(sim.oss().policy_requests("token-files"), 1);
    assert_eq!(policy.endpoint, sim.base_url());
    assert!(!policy.dir.is_empty() && !policy.bucket.starts_with('v'));

    let mut image = Upload::new(&policy, "picture.png", PNG, "image/png");
    image.with_md5 = true;
    let put = image.send().await;
    assert_eq!(put.status(), 200);
    let etag = put.headers()["ETag"].to_str().unwrap().to_owned();
    assert_eq!(etag, format!("\"{}\"", hex::encode_upper(Md5::digest(PNG))));
    assert!(put.text().await.unwrap().is_empty());

    let object_url = format!("{}/{}/{}", policy.endpoint, policy.bucket, image.key);
    let head = reqwest::Client::new().head(&object_url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["ETag"].to_str().unwrap(), etag);
    let missing = reqwest::Client::new()
        .head(format!("{object_url}.gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);

    let confirmed = confirm(&browser, &policy, "picture.png", PNG.len(), "image/png").await;
    assert_eq!(confirmed["statusInfo"]["code"], 0, "{confirmed}");
    let image_id = confirmed["data"]["fileID"].as_str().unwrap().to_owned();
    assert!(image_id.bytes().all(|b| b.is_ascii_digit()));
    let document_id = attach(&browser, "notes.pdf", PDF, "application/pdf").await;
    assert_ne!(image_id, document_id);
    assert_eq!(sim.oss().policy_requests("token-files"), 2);

    let prompt = "关注用户最新发送文件和消息\n这是什么？";
    let form = form(
        &[
            file_entry(2, "picture.png", &image_id),
            file_entry(6, "notes.pdf", &document_id),
        ],
        prompt,
    );
    let body = browser
        .chat_with_form(prompt, "0", Some(&form))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(final_answer(&body), Some(Simulator::answer_for(prompt)), "{body}");

    let chat = &sim.conversations().chats()[0];
    assert_eq!(chat.form.as_deref(), Some(form.as_str()));
    assert_eq!(
        chat.files,
        vec![
            FormFile {
                form_type: 2,
                file_id: image_id.clone(),
                file_name: "picture.png".to_owned()
            },
            FormFile {
                form_type: 6,
                file_id: document_id.clone(),
                file_name: "notes.pdf".to_owned()
            },
        ]
    );
    let files = sim.oss().uploaded_files();
    assert_eq!(files.len(), 2);
    assert_eq!(
        (files[0].file_id.as_str(), files[0].mime.as_str()),
        (image_id.as_str(), "image/png")
    );
    assert_eq!(files[0].bytes, PNG);
    assert_eq!(files[1].bytes, PDF);
    assert!(files.iter().all(|file| file.token == "token-files"));
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn a_put_with_a_wrong_signature_token_key_or_md5_is_refused_like_oss_and_recorded() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-oss").await;
    let policy = request_policy(&browser).await;
    let upload = Upload::new(&policy, "a.png", PNG, "image/png");

    let wrong_secret = upload.send_as("not-the-secret", &policy.security_token).await;
    assert_eq!(wrong_secret.status(), 403);
    let xml = wrong_secret.text().await.unwrap();
    assert!(
        xml.contains("<Code>SignatureDoesNotMatch</Code>") && xml.contains("<StringToSign>"),
        "{xml}"
    );

    let wrong_token = upload.send_as(&policy.secret, "CAISnot-the-token").await;
    assert_eq!(wrong_token.status(), 403);
    assert!(
        wrong_token
            .text()
            .await
            .unwrap()
            .contains("<Code>InvalidSecurityToken</Code>")
    );

    let mut outside = Upload::new(&policy, "a.png", PNG, "image/png");
    outside.key = "elsewhere/a.png".to_owned();
    let outside = outside.send().await;
    assert_eq!(outside.status(), 403);
    assert!(outside.text().await.unwrap().contains("<Code>AccessDenied</Code>"));

    let mut other_bucket = policy.clone();
    other_bucket.bucket = "another-bucket".to_owned();
    let other_bucket = Upload::new(&other_bucket, "a.png", PNG, "image/png").send().await;
    assert_eq!(other_bucket.status(), 404);

    let unsigned = reqwest::Client::new()
        .put(format!("{}/{}/{}", policy.endpoint, policy.bucket, upload.key))
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 403);

    let date = httpdate::fmt_http_date(SystemTime::now());
    let string_to_sign = format!(
        "PUT\nAAAAAAAAAAAAAAAAAAAAAA==\nimage/png\n{date}\nx-oss-security-token:{}\n/{}/{}",
        policy.security_token, policy.bucket, upload.key
    );
    let mut mac = Hmac::<Sha1>::new_from_slice(policy.secret.as_bytes()).unwrap();
    mac.update(string_to_sign.as_bytes());
    let bad_md5 = reqwest::Client::new()
        .put(format!("{}/{}/{}", policy.endpoint, policy.bucket, upload.key))
        .header("Date", date)
        .header("Content-Type", "image/png")
        .header("Content-MD5", "AAAAAAAAAAAAAAAAAAAAAA==")
        .header("x-oss-security-token", &policy.security_token)
        .header(
            "Authorization",
            format!(
                "OSS {}:{}",
                policy.access_key_id,
                BASE64.encode(mac.finalize().into_bytes())
            ),
        )
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(bad_md5.status(), 400);
    assert!(bad_md5.text().await.unwrap().contains("<Code>InvalidDigest</Code>"));

    assert_eq!(sim.violations().len(), 6, "{:?}", sim.violations());
    let never_stored = confirm(&browser, &policy, "a.png", PNG.len(), "image/png").await;
    assert_ne!(never_stored["statusInfo"]["code"], 0);
    assert!(sim.oss().uploaded_files().is_empty());
}

#[tokio::test]
async fn a_callback_with_the_wrong_size_or_mime_is_refused() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-size").await;
    let policy = request_policy(&browser).await;
    let put = Upload::new(&policy, "doc.pdf", PDF, "application/pdf").send().await;
    assert_eq!(put.status(), 200);

    let too_big = confirm(&browser, &policy, "doc.pdf", PDF.len() + 1, "application/pdf").await;
    assert_ne!(too_big["statusInfo"]["code"], 0, "{too_big}");
    assert!(too_big["statusInfo"]["message"].as_str().unwrap().contains("文件"));
    let wrong_mime = confirm(&browser, &policy, "doc.pdf", PDF.len(), "text/plain").await;
    assert_ne!(wrong_mime["statusInfo"]["code"], 0, "{wrong_mime}");

    let numeric_size = json!({
        "fileName": "doc.pdf", "originFileName": "doc.pdf", "dir": policy.dir, "endpoint": policy.endpoint,
        "bucketName": policy.bucket, "size": PDF.len(), "mimeType": "application/pdf",
    });
    let numeric = browser
        .json(
            reqwest::Method::POST,
            "/v1/api/files/policy_callback",
            Some(numeric_size.to_string()),
        )
        .await;
    assert_eq!(numeric["statusInfo"]["code"], 1005, "{numeric}");

    assert_eq!(sim.violations().len(), 3, "{:?}", sim.violations());
    assert!(sim.oss().uploaded_files().is_empty());
    let right = confirm(&browser, &policy, "doc.pdf", PDF.len(), "application/pdf").await;
    assert_eq!(right["statusInfo"]["code"], 0, "{right}");
}

#[tokio::test]
async fn credentials_are_fresh_per_call_and_files_private_to_their_token() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let alice = registered(&sim, "token-alice").await;
    let bob = registered(&sim, "token-bob").await;
    let first = request_policy(&alice).await;
    let second = request_policy(&alice).await;
    assert_ne!(first.access_key_id, second.access_key_id);
    assert_ne!(first.secret, second.secret);
    assert_ne!(first.security_token, second.security_token);
    assert_eq!(first.dir, second.dir);

    let put = Upload::new(&first, "mine.png", PNG, "image/png").send().await;
    assert_eq!(put.status(), 200);
    let stolen = confirm(&bob, &first, "mine.png", PNG.len(), "image/png").await;
    assert_ne!(stolen["statusInfo"]["code"], 0, "{stolen}");
    assert_eq!(sim.violations().len(), 1, "{:?}", sim.violations());

    let file_id = attach(&alice, "own.png", PNG, "image/png").await;
    let form = form(&[file_entry(2, "own.png", &file_id)], "看图");
    let refused = bob.chat_with_form("看图", "0", Some(&form)).await.text().await.unwrap();
    let refused: Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(refused["statusInfo"]["code"], 1005);
    assert_eq!(sim.violations().len(), 2, "{:?}", sim.violations());
    assert!(sim.conversations().chats().is_empty());
}

#[tokio::test]
async fn a_form_that_misdescribes_its_files_is_refused() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-form").await;
    let image_id = attach(&browser, "p.png", PNG, "image/png").await;
    let document_id = attach(&browser, "d.pdf", PDF, "application/pdf").await;

    let wrong_forms = [
        form(&[file_entry(6, "p.png", &image_id)], "问"),
        form(&[file_entry(2, "d.pdf", &document_id)], "问"),
        form(&[file_entry(2, "other.png", &image_id)], "问"),
        form(&[file_entry(2, "p.png", "123456789012345678")], "问"),
        form(&[file_entry(2, "p.png", &image_id)], "别的问题"),
        form(&[], "问"),
        json!([{"name": "", "formType": "2", "content": "p.png", "fileID": image_id},
               {"name": "", "formType": 1, "content": "问"}])
        .to_string(),
        json!([{"name": "", "formType": 1, "content": "问"}, file_entry(2, "p.png", &image_id)]).to_string(),
    ];
    for form in &wrong_forms {
        let answer = browser
            .chat_with_form("问", "0", Some(form))
            .await
            .text()
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(answer["statusInfo"]["code"], 1005, "{form}");
    }
    assert_eq!(sim.violations().len(), wrong_forms.len(), "{:?}", sim.violations());
    assert!(sim.conversations().chats().is_empty());
}

#[tokio::test]
async fn failing_uploads_answer_500_store_nothing_and_are_no_violation() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-fail").await;
    let policy = request_policy(&browser).await;
    sim.faults().fail_uploads(1);
    let upload = Upload::new(&policy, "x.pdf", PDF, "application/pdf");
    let failed = upload.send().await;
    assert_eq!(failed.status(), 500);
    assert!(failed.text().await.unwrap().contains("<Code>InternalError</Code>"));
    let head = reqwest::Client::new()
        .head(format!("{}/{}/{}", policy.endpoint, policy.bucket, upload.key))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 404);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    assert_eq!(upload.send().await.status(), 200);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}
