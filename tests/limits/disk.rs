//! The SQLite store's files: private modes, a key never replaced by a wrong one, a database
//! emptied behind the server's back refused, and a damaged row set aside without stopping the
//! cleanup of the others.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hailuo_sim::{SimConfig, Simulator};
use serde_json::json;

use crate::server::{Server, run_to_exit};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn store_url(database: &Path) -> String {
    format!("sqlite://{}", database.display())
}

async fn chat(server: &Server, token: &str) -> String {
    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(token)
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// A simulator, and a folder holding a database (and its key file) in which a server that has
/// since stopped recorded one conversation of `token-a`.
async fn a_database_with_one_conversation() -> (Simulator, tempfile::TempDir, PathBuf, String) {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("hailuo.db");
    let url = store_url(&database);
    let server = Server::start_against(sim.clone(), &[("HAILUO_STORE__URL", &url)]).await;
    chat(&server, "token-a").await;
    drop(server);
    (sim, dir, database, url)
}

#[tokio::test]
async fn the_database_and_its_key_are_private_and_a_shared_key_file_is_warned_about() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("hailuo.db");
    let url = store_url(&database);
    let server = Server::start_against(sim.clone(), &[("HAILUO_STORE__URL", &url)]).await;
    chat(&server, "token-a").await;
    let key = dir.path().join("hailuo.db.key");
    assert_eq!(mode(&database), 0o600, "the database");
    assert_eq!(mode(&key), 0o600, "the key file");
    for companion in ["hailuo.db-wal", "hailuo.db-shm"] {
        let path = dir.path().join(companion);
        if path.exists() {
            assert_eq!(mode(&path) & 0o077, 0, "{companion}");
        }
    }
    assert!(!server.log().contains("can be read by other users"), "{}", server.log());
    drop(server);

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let server = Server::start_against(sim, &[("HAILUO_STORE__URL", &url)]).await;
    let log = server.log();
    assert!(log.contains("the store key file can be read by other users"), "{log}");
    server
        .assert_pings_within(Duration::from_secs(2), "a shared key file")
        .await;
}

#[tokio::test]
async fn a_missing_key_for_an_existing_database_stops_the_start_and_writes_no_new_key() {
    let (sim, dir, _database, url) = a_database_with_one_conversation().await;
    let key = dir.path().join("hailuo.db.key");
    std::fs::remove_file(&key).unwrap();

    let (started, log) = run_to_exit(&sim, &[("HAILUO_STORE__URL", &url)]);
    assert!(!started, "the server started without its key:\n{log}");
    assert!(log.contains("its key file") && log.contains("is missing"), "{log}");
    assert!(!key.exists(), "a new, wrong key file was written");
}

#[tokio::test]
async fn an_emptied_database_with_its_key_present_stops_the_start() {
    let (sim, dir, database, url) = a_database_with_one_conversation().await;
    for companion in ["hailuo.db-wal", "hailuo.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(companion));
    }
    std::fs::File::create(&database).unwrap(); // truncated to 0 bytes

    let (started, log) = run_to_exit(&sim, &[("HAILUO_STORE__URL", &url)]);
    assert!(!started, "the server started afresh on an emptied database:\n{log}");
    assert!(log.contains("is empty (0 bytes)"), "{log}");
    assert_eq!(std::fs::metadata(&database).unwrap().len(), 0, "left as it was");
}

#[tokio::test]
async fn a_damaged_row_is_set_aside_once_and_the_other_conversations_are_still_deleted() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("hailuo.db");
    let url = store_url(&database);
    let keep = [
        ("HAILUO_STORE__URL", url.as_str()),
        ("HAILUO_SESSION__IDLE_TTL_SECS", "3600"),
    ];
    let server = Server::start_against(sim.clone(), &keep).await;
    let damaged = chat(&server, "token-a").await;
    let intact = chat(&server, "token-b").await;
    drop(server);

    // The sealed token of one row no longer opens.
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    let changed = sqlx::query("UPDATE sessions SET token_sealed = x'00' WHERE conversation = ?")
        .bind(&damaged)
        .execute(&pool)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 1);
    pool.close().await;

    let sweep = [
        ("HAILUO_STORE__URL", url.as_str()),
        ("HAILUO_SESSION__IDLE_TTL_SECS", "0"),
    ];
    let server = Server::start_against(sim.clone(), &sweep).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sim.conversations().live("token-b").is_empty() {
        assert!(
            Instant::now() < deadline,
            "the intact conversation was never deleted:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(sim.conversations().deleted(), vec![intact]);
    // Many sweeps later (every 50 ms), the damaged row was set aside once, not retried.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = server.log();
    assert_eq!(log.matches("set aside a stored conversation").count(), 1, "{log}");
    let metrics = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let unreadable = metrics
        .lines()
        .find(|line| line.starts_with("hailuo_conversations_unreadable_total"))
        .unwrap_or_else(|| panic!("no unreadable counter in:\n{metrics}"));
    assert!(unreadable.ends_with(" 1"), "{unreadable}");
    assert_eq!(
        sim.conversations().live("token-a"),
        vec![damaged.clone()],
        "it stays upstream"
    );
    drop(server);

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", database.display()))
        .await
        .unwrap();
    let (pending,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sessions")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (aside,): (String,) = sqlx::query_as("SELECT conversation FROM sessions_unreadable")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((pending, aside), (0, damaged));
}
