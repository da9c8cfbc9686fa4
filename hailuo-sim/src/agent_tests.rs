//! The simulator's `minimax-agent` dialect against a hand-signed client: a clean client leaves
//! no violation, the agent's extra headers and query values bite when broken, and the answer
//! grows over polls while deleting it is refused as running.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::{Value, json};

use super::protocol_tests::Browser;
use super::verify::{json_signature, md5hex};
use super::*;

/// How a call breaks the agent's headers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Tamper {
    None,
    NoSignature,
    WrongSignature,
    WrongQueryToken,
}

/// A browser of the agent: the `minimax-agent` profile.
fn agent_browser(sim: &Simulator, token: &str) -> Browser {
    let mut browser = Browser::new(sim, token);
    browser.profile = SimConfig::on(Dialect::MinimaxAgent).expected_profile();
    browser
}

/// A JSON call of the agent, signed with `Yy`, `x-timestamp` and `x-signature` unless `tamper`.
async fn call(browser: &Browser, method: reqwest::Method, path: &str, body: Option<Value>, tamper: Tamper) -> Value {
    let unix = Browser::unix();
    let mut uri = browser.full_uri(path, &unix);
    if tamper == Tamper::WrongQueryToken {
        uri = uri.replace(&format!("token={}", browser.token), "token=someone-else");
    }
    let body = body.map(|body| body.to_string());
    let signed = body.as_deref().unwrap_or("");
    let yy = json_signature(&uri, signed, &unix, &browser.profile.salt);
    let seconds = &unix[..unix.len() - 3];
    let signature = md5hex(format!("{seconds}{}{}", browser.token, body.as_deref().unwrap_or("{}")));
    let referer = format!("{}/", browser.profile.origin);
    let mut request = browser
        .dress(
            browser.http.request(method, format!("{}{uri}", browser.base)),
            &referer,
            &yy,
        )
        .header("x-timestamp", seconds);
    match tamper {
        Tamper::NoSignature => {}
        Tamper::WrongSignature => request = request.header("x-signature", md5hex("wrong")),
        Tamper::None | Tamper::WrongQueryToken => request = request.header("x-signature", signature),
    }
    if let Some(body) = body {
        request = request.header("Content-Type", "application/json").body(body);
    }
    request.send().await.unwrap().json().await.unwrap()
}

async fn register(browser: &mut Browser) -> Value {
    let body = json!({"uuid": browser.uuid});
    let answer = call(
        browser,
        reqwest::Method::POST,
        "/v1/api/user/device/register",
        Some(body),
        Tamper::None,
    )
    .await;
    browser.device_id = answer["data"]["deviceIDStr"].as_str().map(str::to_owned);
    answer
}

fn send_body(text: &str) -> Value {
    json!({"msg_type": 1, "text": text, "chat_type": 1, "attachments": [],
           "selected_mcp_tools": [], "backend_config": {}, "sub_agent_ids": []})
}

/// The assistant's content in a `get_chat_detail` answer.
fn answer_of(detail: &Value) -> Option<String> {
    detail["messages"]
        .as_array()?
        .iter()
        .find(|message| message["msg_type"] == 2)
        .and_then(|message| message["msg_content"].as_str().map(str::to_owned))
}

#[tokio::test]
async fn a_clean_agent_client_sends_polls_the_growing_answer_and_deletes() {
    let sim = Simulator::start(SimConfig {
        chunk_delay: Duration::from_millis(20),
        ..SimConfig::on(Dialect::MinimaxAgent)
    })
    .await
    .unwrap();
    let mut browser = agent_browser(&sim, "token-a");
    assert_eq!(register(&mut browser).await["statusInfo"]["code"], 0);
    let info = call(&browser, reqwest::Method::GET, "/v1/api/user/info", None, Tamper::None).await;
    assert!(info["data"]["userInfo"].is_object(), "{info}");

    let text = "你好，请讲一个很长很长的故事";
    let sent = call(
        &browser,
        reqwest::Method::POST,
        "/matrix/api/v1/chat/send_msg",
        Some(send_body(text)),
        Tamper::None,
    )
    .await;
    assert_eq!(sent["base_resp"]["status_code"], 0, "{sent}");
    let chat_id = sent["chat_id"].clone();
    assert!(chat_id.is_u64(), "{sent}");

    // While generating: a second message and a deletion are refused as running.
    let again = call(
        &browser,
        reqwest::Method::POST,
        "/matrix/api/v1/chat/send_msg",
        Some(send_body("again")),
        Tamper::None,
    )
    .await;
    assert_eq!(again["base_resp"]["status_msg"], "chat is running", "{again}");
    let delete = json!({"chat_id": chat_id});
    let refused = call(
        &browser,
        reqwest::Method::POST,
        "/matrix/api/v1/chat/delete_chat",
        Some(delete.clone()),
        Tamper::None,
    )
    .await;
    assert_eq!(refused["base_resp"]["status_msg"], "chat is running", "{refused}");

    let whole = Simulator::answer_for(text);
    let mut seen = Vec::new();
    for _ in 0..200 {
        let detail = call(
            &browser,
            reqwest::Method::POST,
            "/matrix/api/v1/chat/get_chat_detail",
            Some(json!({"chat_id": chat_id})),
            Tamper::None,
        )
        .await;
        assert_eq!(detail["base_resp"]["status_code"], 0, "{detail}");
        if let Some(content) = answer_of(&detail) {
            assert!(whole.starts_with(&content), "{content}");
            if seen.last() != Some(&content) {
                seen.push(content.clone());
            }
            if content == whole {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert_eq!(seen.last(), Some(&whole));
    assert!(seen.len() > 2, "the answer grew over polls: {seen:?}");
    assert!(sim.conversations().detail_polls() >= seen.len());

    let deleted = call(
        &browser,
        reqwest::Method::POST,
        "/matrix/api/v1/chat/delete_chat",
        Some(delete),
        Tamper::None,
    )
    .await;
    assert_eq!(deleted["base_resp"]["status_code"], 0, "{deleted}");
    assert!(sim.conversations().all_live().is_empty());
    assert_eq!(sim.conversations().running_deletes(), 1);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn the_agent_headers_and_query_token_bite_when_broken() {
    let sim = Simulator::start(SimConfig::on(Dialect::MinimaxAgent)).await.unwrap();
    let mut browser = agent_browser(&sim, "token-b");
    assert_eq!(register(&mut browser).await["statusInfo"]["code"], 0);
    for (tamper, violation) in [
        (Tamper::NoSignature, "x-signature missing"),
        (Tamper::WrongSignature, "x-signature"),
        (Tamper::WrongQueryToken, "query token"),
    ] {
        let answer = call(
            &browser,
            reqwest::Method::POST,
            "/matrix/api/v1/chat/send_msg",
            Some(send_body("hi")),
            tamper,
        )
        .await;
        assert_ne!(answer["base_resp"]["status_code"], 0, "{answer}");
        let violations = sim.violations();
        assert!(
            violations.last().is_some_and(|seen| seen.contains(violation)),
            "{violation}: {violations:?}"
        );
    }
    // The hailuoai door does not exist here.
    let stream = browser.chat_request("hi", "0").await;
    assert_eq!(stream.status(), 404);
    assert!(
        sim.violations()
            .last()
            .is_some_and(|seen| seen.contains("no such endpoint"))
    );
}
