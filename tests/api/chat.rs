//! Chat completions: answers, prompts, streaming, continuation, each on every dialect.

use std::time::Duration;

use hailuo_free_api::config::Dialect;
use hailuo_sim::{Fault, Simulator};
use serde_json::{Value, json};

use crate::helpers::*;

fn chunk(data: &str) -> Value {
    serde_json::from_str(data).unwrap_or_else(|_| panic!("not JSON: {data}"))
}

on_every_dialect! {
    async fn a_single_message_is_answered_with_the_upstream_answer(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let completion = app.chat_ok("token-a", &ask("你好，海螺")).await;

        let record = app.last_chat().expect("the upstream got the chat");
        assert_eq!(record.msg_content, "你好，海螺\n");
        assert_eq!(record.requested_chat_id, "0");
        assert_eq!(content(&completion), Simulator::answer_for(&record.msg_content));
        assert_eq!(completion["object"], "chat.completion");
        assert_eq!(completion["id"], record.chat_id.as_str());
        assert_eq!(completion["model"], "hailuo");
        assert_eq!(completion["choices"][0]["message"]["role"], "assistant");
        assert_eq!(completion["choices"][0]["finish_reason"], "stop");
        app.assert_protocol_clean();
        Ok(())
    }

    async fn usage_counts_are_real_token_counts(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let completion = app.chat_ok("token-a", &ask("hello world")).await;
        let usage = &completion["usage"];
        let bpe = tiktoken_rs::o200k_base()?;
        let expected = bpe.encode_ordinary(content(&completion)).len() as u64;
        assert_eq!(usage["completion_tokens"].as_u64(), Some(expected));
        // 3 priming + 3 framing + "user" + "hello world"
        assert_eq!(usage["prompt_tokens"].as_u64(), Some(9));
        assert_eq!(usage["total_tokens"].as_u64(), Some(9 + expected));
        Ok(())
    }

    async fn the_model_is_echoed_and_defaults_to_hailuo(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let named = app
            .chat_ok(
                "token-a",
                &json!({"model": "MiniMax-Text-01", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        assert_eq!(named["model"], "MiniMax-Text-01");
        let unnamed = app
            .chat_ok("token-a", &json!({"messages": [{"role": "user", "content": "hi"}]}))
            .await;
        assert_eq!(unnamed["model"], "hailuo");
        Ok(())
    }

    async fn several_messages_are_merged_with_role_prefixes(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let body = json!({"model": "hailuo", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! ![cat](https://example.com/cat.png)"},
            {"role": "user", "content": [{"type": "text", "text": "Name"}, {"type": "text", "text": "a colour"}]}
        ], "temperature": 0.2, "unknown_field": {"ignored": true}});
        let completion = app.chat_ok("token-a", &body).await;

        let record = app.last_chat().expect("the upstream got the chat");
        assert_eq!(
            record.msg_content,
            "system:Be brief.\nuser:Hi\nassistant:Hello! \nuser:Name\nuser:a colour\nassistant:"
        );
        assert_eq!(content(&completion), Simulator::answer_for(&record.msg_content));
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_conversation_continues_by_its_id(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let first = app.chat_ok("token-a", &ask("Remember 42.")).await;
        let id = first["id"].as_str().expect("an id").to_owned();
        assert!(id.len() >= 18 && id.bytes().all(|b| b.is_ascii_digit()), "id {id}");

        let body = json!({"model": "hailuo", "conversation_id": id, "messages": [
            {"role": "user", "content": "What did I ask you"},
            {"role": "user", "content": "to remember?"}
        ]});
        let second = app.chat_ok("token-a", &body).await;

        let record = app.last_chat().expect("the upstream got the chat");
        assert_eq!(second["id"], id.as_str());
        assert_eq!(record.requested_chat_id, id);
        // A continued conversation sends the new texts without role prefixes.
        assert_eq!(record.msg_content, "What did I ask you\nto remember?\n");
        assert!(
            record.referer.ends_with(&format!("/?chat={id}")),
            "referer {}",
            record.referer
        );
        assert_eq!(app.sim.conversations().live("token-a"), vec![id]);
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_malformed_conversation_id_starts_a_new_conversation(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let body = json!({"conversation_id": "12345", "messages": [{"role": "user", "content": "hi"}]});
        app.chat_ok("token-a", &body).await;
        let record = app.last_chat().expect("the upstream got the chat");
        assert_eq!(record.requested_chat_id, "0");
        Ok(())
    }

    async fn a_streamed_answer_is_forwarded_as_openai_chunks(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        if dialect == Dialect::MinimaxAgent {
            // A polled answer comes in as many pieces as polls saw it grow: at the simulator's
            // own pace the first poll sees it whole.
            app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(40)));
        }
        let mut body = ask("Tell me a story about 海螺 and 🐚 shells");
        body["stream"] = json!(true);
        let response = app.chat("token-a", &body).await;
        assert_eq!(response.status(), 200);
        let headers = response.headers().clone();
        assert!(headers["content-type"].to_str()?.starts_with("text/event-stream"));
        assert_eq!(headers["cache-control"], "no-cache");
        assert_eq!(headers["x-accel-buffering"], "no");
        let data = sse_data(response).await;

        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| chunk(d)).collect();
        assert!(chunks.len() > 3, "the answer came in several chunks");
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        let id = chunks[0]["id"].as_str().expect("an id");
        assert!(!id.is_empty());
        for chunk in &chunks {
            assert_eq!(chunk["id"], id);
            assert_eq!(chunk["object"], "chat.completion.chunk");
        }
        let text: String = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect();
        let record = app.last_chat().expect("the upstream got the chat");
        assert_eq!(text, Simulator::answer_for(&record.msg_content));
        let finishes: Vec<&Value> = chunks
            .iter()
            .map(|c| &c["choices"][0]["finish_reason"])
            .filter(|f| !f.is_null())
            .collect();
        assert_eq!(finishes, vec![&json!("stop")]);
        assert_eq!(chunks.last().expect("chunks")["choices"][0]["finish_reason"], "stop");
        app.assert_protocol_clean();
        Ok(())
    }

    async fn include_usage_adds_a_last_chunk_with_usage_and_no_choices(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let mut body = ask("hello world");
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let (status, data) = app.chat_stream("token-a", &body).await;
        assert_eq!(status, 200);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        let usage_chunk = chunk(&data[data.len() - 2]);
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(usage_chunk["usage"]["prompt_tokens"], 9);
        let completion = usage_chunk["usage"]["completion_tokens"].as_u64().expect("a count");
        assert!(completion > 0);
        assert_eq!(usage_chunk["usage"]["total_tokens"].as_u64(), Some(9 + completion));
        Ok(())
    }

    async fn each_delta_is_forwarded_while_the_upstream_is_still_answering(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(150)));
        let mut body = ask("a slow answer please");
        body["stream"] = json!(true);
        let response = app.chat("token-a", &body).await;
        assert_eq!(response.status(), 200);
        let mut bytes = response.bytes_stream();
        let seen = read_until_first_words(&mut bytes).await;
        // The first words reached us while the upstream stream is still open.
        assert_eq!(app.sim.accounts().active_streams(), 1);
        assert!(!seen.contains("[DONE]"));
        Ok(())
    }
}
