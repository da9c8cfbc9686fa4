//! Accounts: several tokens, one answer per account, refused tokens skipped, devices reused.

use std::time::Duration;

use hailuo_sim::Fault;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_dead_token_is_skipped_for_the_next_one() -> TestResult {
    let app = spawn_app().await;
    app.sim.accounts().kill_token("token-dead");
    for _ in 0..4 {
        app.chat_ok("token-dead,token-alive", &ask("hi")).await;
    }
    assert!(
        app.sim
            .conversations()
            .chats()
            .iter()
            .all(|chat| chat.token == "token-alive")
    );
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn an_account_refused_at_chat_time_is_skipped_for_the_next_one() -> TestResult {
    let app = spawn_app().await;
    app.sim.faults().inject(Fault::AccountRefused);
    app.chat_ok("token-a,token-b", &ask("hi")).await;
    let tokens: Vec<String> = app
        .sim
        .conversations()
        .chats()
        .into_iter()
        .map(|chat| chat.token)
        .collect();
    assert_eq!(tokens.len(), 2, "the refused attempt, then the next token");
    assert_ne!(tokens[0], tokens[1]);
    Ok(())
}

#[tokio::test]
async fn when_every_token_is_refused_the_request_is_a_401_with_the_upstream_reason() -> TestResult {
    let app = spawn_app().await;
    app.sim.accounts().kill_token("token-x");
    app.sim.accounts().kill_token("token-y");
    let error = assert_openai_error(app.chat("token-x,token-y", &ask("hi")).await, 401).await;
    assert!(
        error["message"].as_str().expect("a message").contains("登录已失效"),
        "{error}"
    );
    Ok(())
}

#[tokio::test]
async fn the_bearer_value_is_split_on_commas_and_trimmed() -> TestResult {
    let app = spawn_app().await;
    app.chat_ok(" token-a , ,token-b,", &ask("hi")).await;
    let token = app.last_chat().expect("a chat").token;
    assert!(token == "token-a" || token == "token-b", "{token}");
    Ok(())
}

#[tokio::test]
async fn an_account_answers_one_request_at_a_time() -> TestResult {
    let app = spawn_app().await;
    let requests = (0..4).map(|i| {
        let body = ask(&format!("question {i}"));
        let app = &app;
        async move { app.chat_ok("token-solo", &body).await }
    });
    let answers = futures::future::join_all(requests).await;
    assert_eq!(answers.len(), 4);
    assert_eq!(app.sim.accounts().max_concurrent_streams("token-solo"), 1);
    assert_eq!(app.sim.conversations().chats().len(), 4);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn two_tokens_answer_two_requests_side_by_side() -> TestResult {
    let app = spawn_app().await;
    app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(100)));
    app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(100)));
    let (one, two) = (ask("one"), ask("two"));
    let (first, second) = tokio::join!(
        app.chat_ok("token-a,token-b", &one),
        app.chat_ok("token-a,token-b", &two)
    );
    assert_ne!(first["id"], second["id"]);
    let mut tokens: Vec<String> = app.sim.conversations().chats().into_iter().map(|c| c.token).collect();
    tokens.sort();
    assert_eq!(tokens, vec!["token-a", "token-b"]);
    Ok(())
}

#[tokio::test]
async fn a_request_waiting_past_the_busy_wait_gets_a_429() -> TestResult {
    let app = spawn_app_with(|s| s.accounts.busy_wait = Duration::from_secs(1)).await;
    app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(400)));
    let mut slow = ask("a slow answer that keeps the account busy for a while");
    slow["stream"] = json!(true);
    let busy = app.chat("token-solo", &slow).await;
    assert_eq!(busy.status(), 200);
    let error = assert_openai_error(app.chat("token-solo", &ask("me too")).await, 429).await;
    assert_eq!(error["type"], "rate_limit_error");
    drop(busy);
    Ok(())
}

#[tokio::test]
async fn a_device_is_registered_once_and_reused() -> TestResult {
    let app = spawn_app().await;
    for _ in 0..3 {
        app.chat_ok("token-a", &ask("hi")).await;
    }
    assert_eq!(app.sim.accounts().registrations("token-a"), 1);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn concurrent_first_requests_share_one_registration() -> TestResult {
    let app = spawn_app().await;
    let checks = (0..6).map(|_| app.check_token("token-new"));
    for response in futures::future::join_all(checks).await {
        assert_eq!(response.status(), 200);
    }
    assert_eq!(app.sim.accounts().registrations("token-new"), 1);
    Ok(())
}

#[tokio::test]
async fn a_device_is_registered_again_after_its_lifetime() -> TestResult {
    let app = spawn_app_with(|s| s.upstream.device_ttl = Duration::from_secs(1)).await;
    app.chat_ok("token-a", &ask("hi")).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    app.chat_ok("token-a", &ask("hi again")).await;
    assert_eq!(app.sim.accounts().registrations("token-a"), 2);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn token_check_tells_live_from_dead() -> TestResult {
    let app = spawn_app().await;
    app.sim.accounts().kill_token("token-dead");
    let live: serde_json::Value = app.check_token("token-live").await.json().await?;
    assert_eq!(live, json!({"live": true}));
    let dead = app.check_token("token-dead").await;
    assert_eq!(dead.status(), 200);
    assert_eq!(dead.json::<serde_json::Value>().await?, json!({"live": false}));
    assert!(app.sim.accounts().user_info_calls("token-live") >= 1);
    let empty = app.check_token("  ").await;
    assert_openai_error(empty, 400).await;
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn a_token_that_died_is_found_dead_and_its_device_forgotten() -> TestResult {
    let app = spawn_app().await;
    app.chat_ok("token-a", &ask("hi")).await;
    app.sim.accounts().kill_token("token-a");
    let dead: serde_json::Value = app.check_token("token-a").await.json().await?;
    assert_eq!(dead, json!({"live": false}));
    app.sim.accounts().revive_token("token-a");
    let live: serde_json::Value = app.check_token("token-a").await.json().await?;
    assert_eq!(live, json!({"live": true}));
    assert_eq!(
        app.sim.accounts().registrations("token-a"),
        2,
        "a fresh device after the account was refused"
    );
    Ok(())
}
