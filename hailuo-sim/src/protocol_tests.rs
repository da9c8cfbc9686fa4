//! The simulator against a hand-signed client that follows the protocol to the letter: a clean
//! client must leave no violation, and every rule must bite when broken.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::verify::{ChatSignedFields, chat_signature, json_signature};
use super::*;

/// A browser speaking the protocol, independent of the outbound adapter.
pub(super) struct Browser {
    pub(super) base: String,
    pub(super) token: String,
    pub(super) profile: Profile,
    pub(super) uuid: String,
    pub(super) device_id: Option<String>,
    pub(super) http: reqwest::Client,
}

impl Browser {
    pub(super) fn new(sim: &Simulator, token: &str) -> Self {
        Self {
            base: sim.base_url(),
            token: token.to_owned(),
            profile: SimConfig::default().expected_profile(),
            uuid: uuid::Uuid::new_v4().to_string(),
            device_id: None,
            http: reqwest::Client::new(),
        }
    }

    pub(super) fn unix() -> String {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        format!("{secs}000")
    }

    pub(super) fn full_uri(&self, path: &str, unix: &str) -> String {
        use hailuo_free_api::config::{Placeholder, QueryValue};
        let pairs: Vec<String> = self
            .profile
            .query_pairs()
            .unwrap()
            .into_iter()
            .filter_map(|(key, value)| {
                let value = match value {
                    QueryValue::Literal(literal) => literal.to_owned(),
                    QueryValue::Placeholder(Placeholder::Uuid) => self.uuid.clone(),
                    QueryValue::Placeholder(Placeholder::DeviceId) => self.device_id.clone()?,
                    QueryValue::Placeholder(Placeholder::Unix) => unix.to_owned(),
                    // A token that names no user: the device's uuid stands for it.
                    QueryValue::Placeholder(Placeholder::UserId) => self.uuid.clone(),
                    QueryValue::Placeholder(Placeholder::Token) => self.token.clone(),
                };
                Some(format!("{key}={value}"))
            })
            .collect();
        // A path with its own query gets the common query appended with `&`.
        let joint = if path.contains('?') { '&' } else { '?' };
        format!("{path}{joint}{}", pairs.join("&"))
    }

    pub(super) fn dress(
        &self,
        mut request: reqwest::RequestBuilder,
        referer: &str,
        yy: &str,
    ) -> reqwest::RequestBuilder {
        let trace = uuid::Uuid::new_v4().simple().to_string();
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        request = request
            .header("Token", &self.token)
            .header("Yy", yy)
            .header("Origin", &self.profile.origin)
            .header("Referer", referer)
            .header("Sentry-Trace", format!("{trace}-{span}-0"))
            .header(
                "Baggage",
                format!(
                    "sentry-environment=production,sentry-release={},sentry-public_key={},sentry-trace_id={trace}",
                    self.profile.sentry_release, self.profile.sentry_public_key
                ),
            );
        for (name, value) in &self.profile.headers {
            request = request.header(name, value);
        }
        request
    }

    pub(super) async fn json(&self, method: reqwest::Method, path: &str, body: Option<String>) -> Value {
        let unix = Self::unix();
        let uri = self.full_uri(path, &unix);
        let yy = json_signature(&uri, body.as_deref().unwrap_or(""), &unix, &self.profile.salt);
        let referer = format!("{}/", self.profile.origin);
        let mut request = self.dress(self.http.request(method, format!("{}{uri}", self.base)), &referer, &yy);
        if let Some(body) = body {
            request = request.header("Content-Type", "application/json").body(body);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    pub(super) async fn register(&mut self) -> Value {
        self.device_id = None;
        let body = format!("{{\"uuid\":\"{}\"}}", self.uuid);
        let answer = self
            .json(reqwest::Method::POST, "/v1/api/user/device/register", Some(body))
            .await;
        self.device_id = answer["data"]["deviceIDStr"].as_str().map(str::to_owned);
        answer
    }

    pub(super) async fn chat_request(&self, content: &str, chat_id: &str) -> reqwest::Response {
        self.chat_with_form(content, chat_id, None).await
    }

    /// A chat request carrying `form` when given.
    pub(super) async fn chat_with_form(&self, content: &str, chat_id: &str, form: Option<&str>) -> reqwest::Response {
        let unix = Self::unix();
        let uri = self.full_uri("/v4/api/chat/msg", &unix);
        let fields = ChatSignedFields {
            character_id: "1",
            msg_content: content,
            chat_id,
            form,
        };
        let yy = chat_signature(&uri, &fields, &unix, &self.profile.salt);
        let referer = if chat_id == "0" {
            format!("{}/", self.profile.origin)
        } else {
            format!("{}/?chat={chat_id}", self.profile.origin)
        };
        let mut multipart = reqwest::multipart::Form::new()
            .text("characterID", "1")
            .text("msgContent", content.to_owned())
            .text("chatID", chat_id.to_owned())
            .text("searchMode", "0");
        if let Some(form) = form {
            multipart = multipart.text("form", form.to_owned());
        }
        self.dress(self.http.post(format!("{}{uri}", self.base)), &referer, &yy)
            .header("Accept", "text/event-stream")
            .multipart(multipart)
            .send()
            .await
            .unwrap()
    }

    pub(super) async fn chat(&self, content: &str, chat_id: &str) -> String {
        self.chat_request(content, chat_id).await.text().await.unwrap()
    }
}

/// The `data:` payloads of a whole SSE body.
pub(super) fn events(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data: "))
        .filter_map(|data| serde_json::from_str(data).ok())
        .collect()
}

pub(super) fn final_answer(body: &str) -> Option<String> {
    events(body)
        .iter()
        .find(|event| event["data"]["messageResult"]["isEnd"] == 0)
        .and_then(|event| event["data"]["messageResult"]["content"].as_str().map(str::to_owned))
}

/// Waits (bounded) until `token`'s account is free, as a client of the real upstream must
/// between two answers on one account.
pub(super) async fn until_free(sim: &Simulator, token: &str) {
    for _ in 0..1000 {
        if !sim.accounts().is_busy(token) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("{token} stayed busy");
}

pub(super) async fn registered(sim: &Simulator, token: &str) -> Browser {
    let mut browser = Browser::new(sim, token);
    assert_eq!(browser.register().await["statusInfo"]["code"], 0);
    browser
}

#[tokio::test]
async fn a_clean_client_registers_chats_and_deletes_without_violations() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-a").await;
    assert_eq!(sim.accounts().registrations("token-a"), 1);

    let info = browser.json(reqwest::Method::GET, "/v1/api/user/info", None).await;
    assert!(info["data"]["userInfo"].is_object(), "{info}");
    assert_eq!(sim.accounts().user_info_calls("token-a"), 1);

    let prompt = "你好，海螺！\nhello";
    let body = browser.chat(prompt, "0").await;
    assert_eq!(
        final_answer(&body).as_deref(),
        Some(Simulator::answer_for(prompt).as_str()),
        "{body}"
    );
    assert!(body.contains('\u{FFFD}'), "a torn character is expected: {body}");
    assert!(events(&body).iter().any(|event| event["type"] == 3));
    assert!(events(&body).iter().any(|event| event["type"] == 8));

    let chat_id = sim.conversations().chats()[0].chat_id.clone();
    assert_eq!(sim.conversations().live("token-a"), vec![chat_id.clone()]);
    until_free(&sim, "token-a").await;
    let continued = browser.chat("再来", &chat_id).await;
    assert_eq!(final_answer(&continued), Some(Simulator::answer_for("再来")));

    let path = format!("/v1/api/chat/history/{chat_id}");
    let deleted = browser.json(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(deleted["statusInfo"]["code"], 0, "{deleted}");
    assert!(sim.conversations().live("token-a").is_empty());
    assert_eq!(sim.conversations().deleted(), vec![chat_id]);
    assert_eq!(sim.accounts().active_streams(), 0);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn with_no_tear_pause_the_answer_is_the_same_events() {
    let prompt = "你好，海螺！\nhello";
    let kinds = |body: &str| -> Vec<Value> { events(body).iter().map(|event| event["type"].clone()).collect() };
    let paused = Simulator::start(SimConfig::default()).await.unwrap();
    let paused_body = registered(&paused, "token-a").await.chat(prompt, "0").await;

    let sim = Simulator::start(SimConfig {
        tear_pause: Duration::ZERO,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let body = registered(&sim, "token-a").await.chat(prompt, "0").await;
    assert_eq!(
        final_answer(&body).as_deref(),
        Some(Simulator::answer_for(prompt).as_str()),
        "{body}"
    );
    // The torn events still arrive and parse: only the pause between their halves is gone.
    assert!(body.contains('\u{FFFD}'), "a torn character is expected: {body}");
    assert_eq!(kinds(&body), kinds(&paused_body), "{body}\n{paused_body}");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn an_unregistered_device_and_a_bad_signature_are_violations() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let mut browser = Browser::new(&sim, "token-b");
    browser.device_id = Some("123456789012345678".to_owned());
    let answer = browser.json(reqwest::Method::GET, "/v1/api/user/info", None).await;
    assert_eq!(answer["statusInfo"]["code"], 1003);

    browser.register().await;
    browser.profile.salt = "wrong".to_owned();
    let answer = browser.json(reqwest::Method::GET, "/v1/api/user/info", None).await;
    assert_eq!(answer["statusInfo"]["code"], 1002);
    assert_eq!(sim.violations().len(), 2, "{:?}", sim.violations());
}

#[tokio::test]
async fn a_killed_token_is_logged_out_everywhere_without_a_violation() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-c").await;
    sim.accounts().kill_token("token-c");
    let answer = browser.json(reqwest::Method::GET, "/v1/api/user/info", None).await;
    assert_eq!(answer["statusInfo"]["code"], 1004);
    let chat: Value = serde_json::from_str(&browser.chat("hi", "0").await).unwrap();
    assert_eq!(chat["statusInfo"]["code"], 1004);
    sim.accounts().revive_token("token-c");
    let answer = browser.json(reqwest::Method::GET, "/v1/api/user/info", None).await;
    assert_eq!(answer["statusInfo"]["code"], 0);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn a_second_stream_on_a_busy_token_gets_an_error_event() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-d").await;
    sim.faults().inject(Fault::SlowChunks(Duration::from_millis(50)));
    let slow = browser.chat_request("慢慢来", "0").await;
    let busy = browser.chat("插队", "0").await;
    assert!(busy.contains("1200009"), "{busy}");
    assert_eq!(sim.accounts().max_concurrent_streams("token-d"), 2);
    assert_eq!(
        final_answer(&slow.text().await.unwrap()),
        Some(Simulator::answer_for("慢慢来"))
    );
}

#[tokio::test]
async fn an_account_stays_busy_a_moment_after_its_answer_has_ended() {
    let sim = Simulator::start(SimConfig {
        busy_after_end: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let browser = registered(&sim, "token-w").await;
    let first = browser.chat("先问", "0").await;
    assert_eq!(final_answer(&first), Some(Simulator::answer_for("先问")));
    assert!(sim.accounts().is_busy("token-w"), "the window follows the body's end");
    let refused = browser.chat("马上再问", "0").await;
    assert_eq!(events(&refused)[0]["statusInfo"]["code"], 1_200_009, "{refused}");
    assert_eq!(events(&refused)[0]["statusInfo"]["message"], "上一条回复还未结束");
    assert_eq!(sim.accounts().busy_refusals(), 1);
    assert_eq!(sim.conversations().chats().len(), 1, "a refusal is no accepted chat");
    until_free(&sim, "token-w").await;
    let later = browser.chat("等一会再问", "0").await;
    assert_eq!(final_answer(&later), Some(Simulator::answer_for("等一会再问")));
    assert_eq!(sim.accounts().busy_refusals(), 1);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn an_account_stays_busy_after_a_hang_up_until_it_is_noticed_and_a_moment_more() {
    let sim = Simulator::start(SimConfig {
        busy_after_hangup: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let browser = registered(&sim, "token-h").await;
    sim.faults().inject(Fault::SlowChunks(Duration::from_millis(20)));
    let mut abandoned = browser.chat_request("一个很慢的回答", "0").await;
    assert!(abandoned.chunk().await.unwrap().is_some());
    drop(abandoned);
    // The simulator notices at its next write; from then on the window runs.
    for _ in 0..500 {
        if sim.accounts().active_streams() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(sim.accounts().active_streams(), 0, "the hang-up was noticed");
    assert!(sim.accounts().is_busy("token-h"));
    let refused = browser.chat("马上再问", "0").await;
    assert_eq!(events(&refused)[0]["statusInfo"]["code"], 1_200_009, "{refused}");
    assert_eq!(sim.accounts().busy_refusals(), 1);
    until_free(&sim, "token-h").await;
    let later = browser.chat("等一会再问", "0").await;
    assert_eq!(final_answer(&later), Some(Simulator::answer_for("等一会再问")));
}

#[tokio::test]
async fn faults_are_played_in_order() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-e").await;
    sim.faults().inject(Fault::ServerError);
    sim.faults().inject(Fault::AccountRefused);
    sim.faults().inject(Fault::ContentFiltered { after_events: 1 });
    sim.faults().inject(Fault::CutStream { after_events: 2 });
    sim.faults().inject(Fault::MalformedEvent);

    assert_eq!(browser.chat_request("a", "0").await.status(), 500);
    let refused: Value = serde_json::from_str(&browser.chat("b", "0").await).unwrap();
    assert_eq!(refused["statusInfo"]["code"], 1004);
    until_free(&sim, "token-e").await;
    let filtered = browser.chat("被过滤的问题", "0").await;
    assert!(
        filtered.contains("1500001") && !filtered.contains("\"type\":8"),
        "{filtered}"
    );
    until_free(&sim, "token-e").await;
    let cut = browser.chat_request("被切断的问题", "0").await.text().await;
    assert!(cut.is_err(), "{cut:?}");
    until_free(&sim, "token-e").await;
    let malformed = browser.chat("坏事件", "0").await;
    assert!(malformed.contains("not json"));
    assert_eq!(final_answer(&malformed), Some(Simulator::answer_for("坏事件")));
    assert_eq!(sim.conversations().chats().len(), 5);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn a_hanging_stream_sends_headers_then_nothing() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-f").await;
    sim.faults().inject(Fault::Hang);
    let hanging = browser.chat_request("等等", "0").await;
    assert_eq!(sim.accounts().active_streams(), 1);
    let silence = tokio::time::timeout(Duration::from_millis(200), hanging.text()).await;
    assert!(silence.is_err(), "the hanging stream answered: {silence:?}");
}

#[tokio::test]
async fn failing_deletes_answer_500_and_keep_the_conversation() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-g").await;
    browser.chat("留下", "0").await;
    let chat_id = sim.conversations().chats()[0].chat_id.clone();
    sim.faults().fail_deletes(1);
    let unix = Browser::unix();
    let uri = browser.full_uri(&format!("/v1/api/chat/history/{chat_id}"), &unix);
    let yy = json_signature(&uri, "", &unix, &browser.profile.salt);
    let referer = format!("{}/", browser.profile.origin);
    let response = browser
        .dress(browser.http.delete(format!("{}{uri}", browser.base)), &referer, &yy)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 500);
    assert_eq!(sim.conversations().live("token-g"), vec![chat_id]);
}

#[tokio::test]
async fn the_intl_simulator_takes_its_own_query_and_names_the_chat_title() {
    let sim = Simulator::start(SimConfig::on(Dialect::HailuoIntl)).await.unwrap();
    let mut browser = Browser::new(&sim, "token-i");
    browser.profile = SimConfig::on(Dialect::HailuoIntl).expected_profile();
    assert_eq!(browser.register().await["statusInfo"]["code"], 0);
    assert!(
        browser
            .full_uri("/p", "1")
            .contains("&biz_id=2&app_id=3001&version_code=22201&lang=en&")
    );
    let body = browser.chat("你好", "0").await;
    assert_eq!(final_answer(&body), Some(Simulator::answer_for("你好")), "{body}");
    let sent = events(&body).into_iter().find(|event| event["type"] == 1).unwrap();
    assert!(sent["data"]["sendResult"]["chatTitle"].is_string(), "{sent}");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn the_intl_simulator_refuses_the_hailuoai_query_and_origin() {
    let sim = Simulator::start(SimConfig::on(Dialect::HailuoIntl)).await.unwrap();
    let mut browser = Browser::new(&sim, "token-j");
    let answer = browser.register().await;
    assert_ne!(answer["statusInfo"]["code"], 0, "{answer}");
    let violations = sim.violations();
    assert!(
        violations.iter().any(|violation| violation.contains("query keys")),
        "{violations:?}"
    );
    // The intl query with the hailuoai origin is still refused.
    browser.profile = SimConfig::on(Dialect::HailuoIntl).expected_profile();
    browser.profile.origin = "https://hailuoai.com".to_owned();
    browser.register().await;
    let violations = sim.violations();
    assert!(
        violations.iter().any(|violation| violation.contains("header Origin")),
        "{violations:?}"
    );
}
