//! Faults the simulator injects, one test each, run on every dialect: the client gets a proper
//! answer or an OpenAI-shaped error, the account is free right after, no conversation stays
//! upstream and the upstream saw nothing that breaks the protocol.

use std::time::Duration;

use hailuo_free_api::config::{Dialect, Settings};
use hailuo_sim::{Fault, SimConfig, Simulator};
use serde_json::{Value, json};

use crate::helpers::*;

/// Conversations are deleted as soon as their answer ends.
fn delete_at_once(settings: &mut Settings) {
    settings.session.idle_ttl = Duration::from_secs(0);
}

/// A streamed request.
fn streamed(text: &str) -> Value {
    let mut body = ask(text);
    body["stream"] = json!(true);
    body
}

/// The checks every fault test ends with: a follow-up request on `token` is answered, and
/// then nothing is left upstream and nothing broke the protocol.
async fn assert_recovered(app: &TestApp, token: &str) {
    let completion = app.chat_ok(token, &ask("are you still there?")).await;
    assert_eq!(
        content(&completion),
        Simulator::answer_for(&app.sim.conversations().chats().last().expect("a chat").msg_content)
    );
    assert_nothing_left(app).await;
}

/// Every conversation created upstream gets deleted, and the protocol was kept.
async fn assert_nothing_left(app: &TestApp) {
    assert!(
        app.nothing_left_upstream(Duration::from_secs(20)).await,
        "conversations left upstream: {:?}",
        app.sim.conversations().all_live()
    );
    let deleted = app.sim.conversations().deleted();
    for (created, _) in app.sim.conversations().created() {
        assert!(deleted.contains(&created), "{created} was never deleted");
    }
    app.assert_protocol_clean();
}

on_every_dialect! {
    async fn an_upstream_5xx_is_a_502_and_leaves_the_account_free(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| {
            delete_at_once(s);
            s.upstream.retries = 0;
        })
        .await;
        app.sim.faults().inject(Fault::ServerError);
        let error = assert_openai_error(app.chat("token-a", &ask("hi")).await, 502).await;
        assert_eq!(error["code"], "upstream_unavailable");
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    async fn a_reset_before_any_response_is_retried(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.sim.faults().inject(Fault::ResetBeforeResponse);
        let completion = app.chat_ok("token-a", &ask("hi")).await;
        let chats = app.sim.conversations().chats();
        assert_eq!(chats.len(), 2, "the reset attempt and its retry");
        assert_eq!(content(&completion), Simulator::answer_for(&chats[1].msg_content));
        assert_eq!(app.sim.faults().played().get("ResetBeforeResponse"), Some(&1));
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    async fn resets_past_the_retries_are_a_502(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| {
            delete_at_once(s);
            s.upstream.retries = 1;
        })
        .await;
        app.sim.faults().inject(Fault::ResetBeforeResponse);
        app.sim.faults().inject(Fault::ResetBeforeResponse);
        let error = assert_openai_error(app.chat("token-a", &streamed("hi")).await, 502).await;
        assert_eq!(error["code"], "upstream_unavailable");
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    async fn a_reset_before_any_content_is_retried_and_both_conversations_deleted(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.sim.faults().inject(Fault::ResetStream { after_events: 0 });
        let completion = app.chat_ok("token-a", &ask("hi")).await;
        let chats = app.sim.conversations().chats();
        assert_eq!(chats.len(), 2);
        assert_eq!(content(&completion), Simulator::answer_for(&chats[1].msg_content));
        // The broken attempt had made a conversation already (its send_result came first).
        assert_eq!(app.sim.conversations().created().len(), 2);
        assert_nothing_left(&app).await;
        Ok(())
    }

    async fn content_refused_at_once_still_has_its_conversation_deleted(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.sim.faults().inject(Fault::ContentFiltered { after_events: 0 });
        let error = assert_openai_error(app.chat("token-a", &ask("something bad")).await, 400).await;
        assert_eq!(error["code"], "content_filtered", "{error}");
        assert_eq!(app.sim.conversations().created().len(), 1);
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    async fn a_malformed_json_envelope_is_retried_then_a_502(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| {
            delete_at_once(s);
            s.upstream.retries = 1;
        })
        .await;
        app.sim.faults().inject(Fault::MalformedEnvelope);
        app.chat_ok("token-a", &ask("hi")).await;
        app.sim.faults().inject(Fault::MalformedEnvelope);
        app.sim.faults().inject(Fault::MalformedEnvelope);
        let error = assert_openai_error(app.chat("token-a", &ask("hi")).await, 502).await;
        assert_eq!(error["code"], "upstream_unavailable");
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    async fn a_malformed_event_in_a_stream_is_skipped(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.sim.faults().inject(Fault::MalformedEvent);
        let (status, data) = app.chat_stream("token-a", &streamed("hi")).await;
        assert_eq!(status, 200);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    async fn a_hanging_upstream_is_a_504_and_frees_the_account(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| {
            delete_at_once(s);
            s.upstream.idle_timeout = Duration::from_secs(1);
            s.upstream.retries = 0;
        })
        .await;
        app.sim.faults().inject(Fault::Hang);
        let error = assert_openai_error(app.chat("token-a", &streamed("hello?")).await, 504).await;
        assert_eq!(error["type"], "timeout_error");
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    async fn a_token_that_dies_between_requests_is_skipped_for_the_other(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.chat_ok("token-dead", &ask("hi")).await;
        assert!(app.nothing_left_upstream(Duration::from_secs(20)).await);
        app.sim.accounts().kill_token("token-dead");
        for _ in 0..4 {
            app.chat_ok("token-dead,token-alive", &ask("hi")).await;
        }
        let answered_by: Vec<String> = app
            .sim
            .conversations()
            .chats()
            .iter()
            .skip(1)
            .map(|c| c.token.clone())
            .collect();
        assert!(
            answered_by.iter().all(|token| token == "token-alive"),
            "{answered_by:?}"
        );
        // Alone, the dead token is a 401 that names the cause.
        let error = assert_openai_error(app.chat("token-dead", &ask("hi")).await, 401).await;
        assert!(
            error["message"].as_str().is_some_and(|m| m.contains("refused")),
            "{error}"
        );
        assert_recovered(&app, "token-alive").await;
        Ok(())
    }

    async fn a_client_that_disconnects_mid_stream_frees_the_account_at_once(dialect: Dialect) -> TestResult {
        // No waiting for a busy account, nor a rest after the hang-up: the follow-up succeeds
        // only if the account is free.
        let app = spawn_app_on_with(dialect, |s| {
            delete_at_once(s);
            s.accounts.busy_wait = Duration::from_secs(0);
            s.accounts.hangup_rest = Duration::ZERO;
        })
        .await;
        app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(40)));
        let response = app
            .chat("token-a", &streamed("a slow answer nobody will read to the end"))
            .await;
        assert_eq!(response.status(), 200);
        let mut bytes = Box::pin(response.bytes_stream());
        read_until_first_words(&mut bytes).await;
        drop(bytes);
        // The upstream stream closes once the proxy lets go of it, and with it the account.
        assert!(app.upstream_idle().await, "the upstream stream stayed open");
        let first = app.sim.conversations().created()[0].0.clone();
        assert_recovered(&app, "token-a").await;
        assert!(app.sim.conversations().deleted().contains(&first));
        Ok(())
    }

    async fn the_simulator_restarting_between_requests_is_survived(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.chat_ok("token-a", &ask("before")).await;
        assert!(app.nothing_left_upstream(Duration::from_secs(20)).await);
        app.sim.restart().await?;
        // Pooled connections to the old server are dead; the proxy must not mind.
        let (status, data) = app.chat_stream("token-a", &streamed("after")).await;
        assert_eq!(status, 200);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    async fn failed_deletions_are_retried_until_the_conversation_is_gone(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.sim.faults().fail_deletes(2);
        app.chat_ok("token-a", &ask("hi")).await;
        let created = app.sim.conversations().created();
        assert_eq!(created.len(), 1);
        // Retries back off (1 s, then 2 s): bound the wait generously.
        assert!(
            app.nothing_left_upstream(Duration::from_secs(30)).await,
            "{:?}",
            app.sim.conversations().all_live()
        );
        assert_eq!(app.sim.conversations().deleted(), vec![created[0].0.clone()]);
        app.assert_protocol_clean();
        Ok(())
    }

    async fn with_every_request_faulted_each_one_ends_and_nothing_is_left(dialect: Dialect) -> TestResult {
        let sim_config = SimConfig {
            fault_rate: 1.0,
            fault_seed: Some(7),
            ..SimConfig::on(dialect)
        };
        let app = spawn_app_with_sim(sim_config, |s| {
            delete_at_once(s);
            s.upstream.retries = 1;
        })
        .await;
        let tokens = "token-1,token-2,token-3";
        for round in 0..24 {
            let body = if round % 2 == 0 { ask("hi") } else { streamed("hi") };
            let response = app.chat(tokens, &body).await;
            let status = response.status().as_u16();
            if status == 200 {
                // A stream ends with [DONE] or an error event; a completion is whole.
                if round % 2 == 1 {
                    let data = sse_data(response).await;
                    let last = data.last().expect("events");
                    assert!(last == "[DONE]" || last.contains("\"error\""), "{data:?}");
                } else {
                    let completion: Value = response.json().await?;
                    assert!(!content(&completion).is_empty());
                }
            } else {
                assert_openai_error(response, status).await;
            }
            // The next request queues behind nothing: every token is free again.
            assert!(app.upstream_idle().await);
        }
        let played: usize = app.sim.faults().played().values().sum();
        assert!(played >= 24, "{:?}", app.sim.faults().played());
        app.sim.faults().set_rate(0.0);
        // Refused tokens (AccountRefused) lost their device; they register again when used.
        assert_recovered(&app, tokens).await;
        Ok(())
    }

    async fn a_non_streamed_answer_cut_mid_way_is_asked_for_again_and_both_conversations_are_deleted(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        // Content has come, but nothing has reached the client: worth another try.
        app.sim.faults().inject(Fault::CutStream { after_events: 2 });
        let completion = app.chat_ok("token-a", &ask("an answer cut off mid-way")).await;
        assert_eq!(
            content(&completion),
            Simulator::answer_for("an answer cut off mid-way\n")
        );
        assert_eq!(
            app.sim.conversations().created().len(),
            2,
            "the cut attempt and the retry"
        );
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(5)).await);
        app.sim.faults().inject(Fault::ResetStream { after_events: 2 });
        let completion = app.chat_ok("token-a", &ask("an answer reset mid-way")).await;
        assert_eq!(content(&completion), Simulator::answer_for("an answer reset mid-way\n"));
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(5)).await);
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_device_the_upstream_forgot_is_registered_again_and_the_request_answered(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.chat_ok("token-a", &ask("hi")).await;
        assert_eq!(app.sim.accounts().registrations("token-a"), 1);
        app.sim.accounts().forget_devices("token-a");
        let completion = app.chat_ok("token-a", &ask("again")).await;
        assert_eq!(content(&completion), Simulator::answer_for("again\n"));
        assert_eq!(app.sim.accounts().registrations("token-a"), 2, "one new registration");
        // Not counted as a refusal of the token: it is not resting.
        let check = app.check_token("token-a").await;
        assert_eq!(check.json::<Value>().await?["live"], json!(true));
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(5)).await);
        app.assert_protocol_clean();
        Ok(())
    }

    async fn concurrent_requests_on_a_forgotten_device_share_one_new_registration(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.chat_ok("token-a,token-b", &ask("hi")).await;
        for token in ["token-a", "token-b"] {
            app.sim.accounts().forget_devices(token);
        }
        let (one, two) = (ask("one"), ask("two"));
        let (first, second) = tokio::join!(app.chat("token-a,token-b", &one), app.chat("token-a,token-b", &two));
        assert_eq!((first.status().as_u16(), second.status().as_u16()), (200, 200));
        for token in ["token-a", "token-b"] {
            // At most the first registration and one new one, however many requests met the loss.
            let registered = app.sim.accounts().registrations(token);
            assert!(registered <= 2, "{token}: {registered} registrations");
        }
        app.assert_protocol_clean();
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("a polled answer has no stream to break after content: a failed poll before content is retried, as the other fault tests check")
    async fn a_reset_during_the_stream_ends_it_with_an_error_event(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.sim.faults().inject(Fault::ResetStream { after_events: 3 });
        let (status, data) = app
            .chat_stream(
                "token-a",
                &streamed("a long answer that a reset will break in the middle"),
            )
            .await;
        assert_eq!(status, 200);
        let last: Value = serde_json::from_str(data.last().expect("events"))?;
        assert_eq!(last["error"]["type"], "upstream_error", "{last}");
        assert!(!data.iter().any(|d| d == "[DONE]"));
        assert!(data.len() >= 2, "content came before the reset: {data:?}");
        assert_eq!(
            app.sim.conversations().chats().len(),
            1,
            "nothing is retried once content was sent"
        );
        assert_eq!(app.sim.conversations().created().len(), 1);
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    not_on_agent("a polled answer has no stream to cut after content: the first poll sees the whole answer at the simulator's pace")
    async fn a_stream_cut_without_an_end_event_leaves_nothing_upstream(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        // Before content: retried, and the cut attempt's conversation is deleted too.
        app.sim.faults().inject(Fault::CutStream { after_events: 0 });
        app.chat_ok("token-a", &ask("hi")).await;
        assert_eq!(app.sim.conversations().created().len(), 2);
        // After content: an error event ends the client's stream.
        app.sim.faults().inject(Fault::CutStream { after_events: 2 });
        let (status, data) = app
            .chat_stream("token-a", &streamed("an answer cut off without its end"))
            .await;
        assert_eq!(status, 200);
        let last: Value = serde_json::from_str(data.last().expect("events"))?;
        assert_eq!(last["error"]["type"], "upstream_error", "{last}");
        assert_recovered(&app, "token-a").await;
        Ok(())
    }

    not_on_agent("a polled answer is read with its token: once the token dies the rest of the answer cannot be read")
    async fn a_token_that_dies_mid_stream_finishes_its_answer_and_requests_move_on(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(40)));
        let response = app
            .chat(
                "token-x,token-y",
                &streamed("a slow answer during which its token dies"),
            )
            .await;
        assert_eq!(response.status(), 200);
        let running = app.sim.conversations().chats().last().expect("the chat").token.clone();
        let other = if running == "token-x" { "token-y" } else { "token-x" };
        let mut bytes = Box::pin(response.bytes_stream());
        read_until_first_words(&mut bytes).await;
        app.sim.accounts().kill_token(&running);
        let rest = sse_data_from(bytes).await;
        assert_eq!(rest.last().map(String::as_str), Some("[DONE]"), "{rest:?}");
        // The next requests go to the living token.
        for _ in 0..3 {
            app.chat_ok("token-x,token-y", &ask("next")).await;
        }
        assert!(
            app.sim
                .conversations()
                .chats()
                .iter()
                .skip(1)
                .all(|chat| chat.token == other)
        );
        // The dead account's conversation cannot be deleted (every call of it is refused): it is
        // the only one left upstream, and only until its owner logs in and deletes it.
        assert!(
            eventually(Duration::from_secs(20), || async {
                app.sim
                    .conversations()
                    .all_live()
                    .iter()
                    .all(|(_, owner)| *owner == running)
            })
            .await,
            "{:?}",
            app.sim.conversations().all_live()
        );
        assert_eq!(app.sim.conversations().live(&running).len(), 1);
        app.assert_protocol_clean();
        Ok(())
    }

    not_on_agent("a polled answer survives a restart: each poll is a request of its own")
    async fn the_simulator_restarting_mid_stream_ends_it_with_an_error_event(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, delete_at_once).await;
        app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(40)));
        let response = app
            .chat("token-a", &streamed("a slow answer that a restart will break"))
            .await;
        assert_eq!(response.status(), 200);
        let mut bytes = Box::pin(response.bytes_stream());
        read_until_first_words(&mut bytes).await;
        app.sim.restart().await?;
        let rest = sse_data_from(bytes).await;
        let last: Value = serde_json::from_str(rest.last().expect("an event after the restart"))?;
        assert_eq!(last["error"]["type"], "upstream_error", "{last}");
        assert_recovered(&app, "token-a").await;
        Ok(())
    }
}

on_every_dialect! {
    async fn a_conversation_made_by_an_upstream_that_answered_after_we_gave_up_is_deleted(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |settings| {
            delete_at_once(settings);
            settings.upstream.first_byte_timeout = Duration::from_secs(1);
        })
        .await;
        // The first attempt times out; the upstream answers it later, the retry at once.
        app.sim.faults().inject(Fault::LateAnswer(Duration::from_millis(1_500)));
        let completion = app.chat_ok("token-a", &ask("hi")).await;
        assert_eq!(content(&completion), Simulator::answer_for("hi\n"));
        let both_made = eventually(Duration::from_secs(5), || async {
            app.sim.conversations().created().len() == 2
        })
        .await;
        assert!(both_made, "the late attempt never made its conversation");
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(5)).await);
        assert_eq!(app.sim.conversations().deleted().len(), 2, "the late one too");
        app.assert_protocol_clean();
        Ok(())
    }
}
