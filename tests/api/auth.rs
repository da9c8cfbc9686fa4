//! Who may call and on which accounts: API keys and the server's token pool, the rest of
//! tokens the upstream keeps refusing, back-pressure (503 past the queue) and a hanging
//! upstream ending in 504.

use std::time::{Duration, Instant};

use futures::StreamExt;
use hailuo_free_api::config::Settings;
use hailuo_free_api::domain::chat::AccountToken;
use hailuo_sim::Fault;
use serde_json::json;

use crate::helpers::*;

const KEY: &str = "sk-test-key-5b1e9c";
const POOL: [&str; 2] = ["pool-token-one", "pool-token-two"];

fn with_keys(settings: &mut Settings) {
    settings.auth.api_keys = vec![KEY.to_owned(), "sk-other-key".to_owned()];
    settings.auth.tokens = POOL.iter().map(|token| (*token).to_owned()).collect();
}

#[tokio::test]
async fn with_api_keys_a_missing_or_wrong_key_is_a_401_that_never_shows_a_key() -> TestResult {
    let app = spawn_app_with(with_keys).await;

    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&ask("hi"))
        .send()
        .await?;
    assert_openai_error(response, 401).await;

    let wrong = "sk-test-key-5b1e9"; // the right key minus its last character
    let response = app.chat(wrong, &ask("hi")).await;
    let error = assert_openai_error(response, 401).await;
    assert_eq!(error["type"], "authentication_error");
    assert_eq!(error["code"], "invalid_api_key");
    let text = error.to_string();
    assert!(!text.contains(wrong) && !text.contains(KEY), "a key was echoed: {text}");

    let response = app.client.get(app.url("/v1/models")).bearer_auth(wrong).send().await?;
    assert_openai_error(response, 401).await;
    assert!(
        app.sim.conversations().chats().is_empty(),
        "nothing reached the upstream"
    );

    for open in ["/ping", "/metrics", "/openapi.json", "/docs/"] {
        assert_eq!(app.get(open).await.status(), 200, "{open} stays open");
    }
    Ok(())
}

#[tokio::test]
async fn the_right_key_runs_the_request_on_the_server_pool() -> TestResult {
    let app = spawn_app_with(with_keys).await;
    let completion = app.chat_ok(KEY, &ask("hello pool")).await;
    assert!(content(&completion).contains("hello pool"), "{completion}");
    let chats = app.sim.conversations().chats();
    assert_eq!(chats.len(), 1);
    assert!(POOL.contains(&chats[0].token.as_str()), "ran on {}", chats[0].token);

    let response = app.client.get(app.url("/v1/models")).bearer_auth(KEY).send().await?;
    assert_eq!(response.status(), 200);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn a_raw_hailuo_token_is_refused_when_the_server_has_keys() -> TestResult {
    let app = spawn_app_with(with_keys).await;
    for raw in ["client-own-hailuo-token", POOL[0], &format!("{},{}", POOL[0], POOL[1])] {
        let error = assert_openai_error(app.chat(raw, &ask("hi")).await, 401).await;
        assert!(!error.to_string().contains(POOL[0]), "{error}");
    }
    assert!(
        app.sim.conversations().chats().is_empty(),
        "no raw token reached the upstream"
    );
    Ok(())
}

#[tokio::test]
async fn token_check_needs_a_key_only_when_the_server_has_keys() -> TestResult {
    let app = spawn_app_with(with_keys).await;
    assert_openai_error(app.check_token("some-token").await, 401).await;
    let response = app
        .client
        .post(app.url("/token/check"))
        .bearer_auth(KEY)
        .json(&json!({"token": "some-token"}))
        .send()
        .await?;
    assert_eq!(response.status(), 200);
    let verdict: serde_json::Value = response.json().await?;
    assert_eq!(verdict["live"], true);

    let open = spawn_app().await;
    assert_eq!(open.check_token("some-token").await.status(), 200);
    Ok(())
}

#[tokio::test]
async fn without_api_keys_the_bearer_value_is_the_client_token_list() -> TestResult {
    let app = spawn_app().await;
    app.chat_ok("client-token-a", &ask("hi")).await;
    assert_eq!(app.last_chat().expect("a chat").token, "client-token-a");
    assert_openai_error(app.chat("", &ask("hi")).await, 401).await;
    Ok(())
}

#[tokio::test]
async fn a_token_refused_twice_rests_without_upstream_calls_then_is_tried_again() -> TestResult {
    const TOKEN: &str = "token-resting-4c2d";
    let app = spawn_app_with(|s| {
        s.accounts.cooldown_after = 2;
        s.accounts.cooldown = Duration::from_secs(4);
    })
    .await;
    app.sim.faults().inject(Fault::AccountRefused);
    app.sim.faults().inject(Fault::AccountRefused);
    assert_openai_error(app.chat(TOKEN, &ask("one")).await, 401).await;
    assert_openai_error(app.chat(TOKEN, &ask("two")).await, 401).await;
    assert_eq!(
        app.sim.conversations().chats().len(),
        2,
        "both refusals came from the upstream"
    );
    let registrations = app.sim.accounts().registrations(TOKEN);

    let error = assert_openai_error(app.chat(TOKEN, &ask("three")).await, 401).await;
    assert!(
        error["message"].as_str().unwrap_or_default().contains("rests"),
        "{error}"
    );
    assert_eq!(
        app.sim.conversations().chats().len(),
        2,
        "a resting token is not sent upstream"
    );
    assert_eq!(
        app.sim.accounts().registrations(TOKEN),
        registrations,
        "nor registered again"
    );

    let fingerprint = format!(r#"account="{}""#, AccountToken::new(TOKEN).fingerprint());
    assert_eq!(app.metric("hailuo_accounts_cooldown", &fingerprint).await, Some(1.0));

    // After the rest it is tried again, and its success clears it.
    let back = eventually(Duration::from_secs(20), || async {
        app.chat(TOKEN, &ask("again")).await.status() == 200
    })
    .await;
    assert!(back, "the token was never tried again");
    assert_eq!(app.sim.conversations().chats().last().expect("a chat").token, TOKEN);
    assert_eq!(app.metric("hailuo_accounts_cooldown", &fingerprint).await, Some(0.0));
    Ok(())
}

#[tokio::test]
async fn a_dead_pool_token_rests_and_metrics_show_its_fingerprint_never_the_token() -> TestResult {
    const DEAD: &str = "pool-dead-token-91ae";
    const ALIVE: &str = "pool-alive-token-07bd";
    let app = spawn_app_with(|s| {
        s.auth.api_keys = vec![KEY.to_owned()];
        s.auth.tokens = vec![DEAD.to_owned(), ALIVE.to_owned()];
        s.accounts.cooldown_after = 2;
        s.accounts.cooldown = Duration::from_secs(300);
    })
    .await;
    app.sim.accounts().kill_token(DEAD);
    let fingerprint = format!(r#"account="{}""#, AccountToken::new(DEAD).fingerprint());
    // Each request tries the pool in a random order: ask until the dead token has been
    // tried (and refused) twice, which is bound to happen long before 100 requests.
    let mut asked = 0;
    while app
        .metric("hailuo_accounts_rejected_total", &fingerprint)
        .await
        .unwrap_or(0.0)
        < 2.0
    {
        assert!(asked < 100, "the dead token was never tried twice");
        app.chat_ok(KEY, &ask(&format!("question {asked}"))).await;
        asked += 1;
    }
    // Resting now: however many more requests come, it is not tried again.
    for i in 0..16 {
        app.chat_ok(KEY, &ask(&format!("more {i}"))).await;
    }
    assert!(app.sim.conversations().chats().iter().all(|chat| chat.token == ALIVE));
    let refusals = app.metric("hailuo_accounts_rejected_total", &fingerprint).await;
    assert_eq!(
        refusals.unwrap_or(0.0),
        2.0,
        "tried twice, then left out for the rest of its cool-down"
    );
    assert_eq!(app.metric("hailuo_accounts_cooldown", &fingerprint).await, Some(1.0));
    let body = app.get("/metrics").await.text().await?;
    for secret in [DEAD, ALIVE, KEY] {
        assert!(!body.contains(secret), "{secret} shows in the metrics");
    }
    Ok(())
}

#[tokio::test]
async fn requests_past_the_queue_get_503_with_retry_after_and_the_queued_one_is_answered() -> TestResult {
    let app = spawn_app_with(|s| {
        s.server.max_in_flight = 1;
        s.server.max_queued = 1;
    })
    .await;
    app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(150)));
    let long = json!({"model": "hailuo", "stream": true,
        "messages": [{"role": "user", "content": "a long question that takes a while to answer"}]});
    let streaming = app.chat("token-a", &long).await;
    assert_eq!(streaming.status(), 200);
    let mut first = streaming.bytes_stream();
    read_until_first_words(&mut first).await;

    // The one slot is taken: of two more requests, one queues and one is turned away.
    let (ask_b, ask_c) = (ask("b"), ask("c"));
    let (b, c) = tokio::join!(app.chat("token-b", &ask_b), app.chat("token-c", &ask_c));
    let (refused, queued) = if b.status() == 503 { (b, c) } else { (c, b) };
    assert_eq!(
        refused.headers().get("retry-after").map(|v| v.to_str().ok()),
        Some(Some("1"))
    );
    let error = assert_openai_error(refused, 503).await;
    assert_eq!(error["code"], "server_overloaded");
    assert_eq!(
        queued.status(),
        200,
        "the queued request is answered once the slot frees"
    );
    while first.next().await.is_some() {}
    Ok(())
}

#[tokio::test]
async fn a_hanging_upstream_ends_in_504_within_the_timeouts_and_frees_the_accounts() -> TestResult {
    let app = spawn_app_with(|s| {
        s.upstream.first_byte_timeout = Duration::from_secs(1);
        s.accounts.busy_wait = Duration::from_secs(3);
        s.upstream.retries = 1;
        s.upstream.retry_delay = Duration::from_millis(20);
    })
    .await;
    app.sim.faults().inject(Fault::Hang);
    app.sim.faults().inject(Fault::Hang);
    let started = Instant::now();
    let error = assert_openai_error(app.chat("token-h1,token-h2", &ask("hello?")).await, 504).await;
    let took = started.elapsed();
    assert_eq!(error["code"], "upstream_timeout");
    assert_eq!(
        app.sim.conversations().chats().len(),
        2,
        "two attempts, each cut at the first-byte timeout"
    );
    // Two attempts of 1 s plus a short pause; the bound is generous for a busy machine.
    assert!(took < Duration::from_secs(30), "took {took:?}");

    // The gateway let go of both accounts: the next request is sent upstream on one of them
    // at once (a kept lease would make it wait, then 429). The simulator itself only notices
    // the hang-up at its next write, which a hanging stream never makes, so it may still
    // think the stream open and refuse this one; what matters here is that it was sent.
    let response = app.chat("token-h1,token-h2", &ask("and now?")).await;
    assert_ne!(response.status(), 429, "an account was still leased");
    assert!(
        app.sim.conversations().chats().len() > 2,
        "the next request reached the upstream"
    );
    Ok(())
}
