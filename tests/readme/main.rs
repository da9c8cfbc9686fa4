//! The README's offline trial, as a new user runs it: the two commands of "Try it offline"
//! start the real `hailuo-sim` and `hailuo-free-api` binaries, every command of its curl block
//! runs in bash with curl, and its Python block runs with python3 and the `openai` package.
//! The only change made to the README's text is the ports: the simulator's `--port` becomes 0
//! (it names the port it took) and the server's becomes a free one, so that the test never
//! meets another process on 8000 or 8100. Each curl call must answer 200 with what its route
//! promises: a chat completion (or its event stream) with the simulator's answer, speech
//! audio in the file named, subtitles, a live token.
//!
//! The tools are the user's: without bash, curl, python3 or `openai` the tests say so and pass,
//! unless `CI=true`, where they fail (`.ci/run` installs curl and `openai`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod processes;
mod text;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hailuo_sim::Simulator;
use serde_json::Value;

use crate::processes::OfflineTrial;
use crate::text::{fenced, offline_section, option_values};

#[test]
fn every_curl_example_of_the_offline_trial_answers_as_shown() {
    let tools: [(&str, &[&str], &str); 3] = [
        ("bash", &["--version"], "bash"),
        ("curl", &["--version"], "curl"),
        ("python3", &["--version"], "python3"),
    ];
    if !tools_present(&tools) {
        return;
    }
    let trial = OfflineTrial::start();
    let block = fenced(offline_section(), "### curl", "sh");
    let steps: Vec<&str> = block
        .split("\n\n")
        .map(str::trim)
        .filter(|step| !step.is_empty())
        .collect();
    let script = steps
        .iter()
        .enumerate()
        .map(|(i, step)| format!("{}\n{}\n", trial.rewrite(step), step_marker(i)))
        .collect::<String>();
    let curlrc = trial.dir.path().join(".curlrc");
    // Quiet, bounded, and each call's status on stderr: the requests are the README's.
    std::fs::write(
        &curlrc,
        "silent\nshow-error\nmax-time = 120\nwrite-out = \"%{stderr}@@http %{http_code}\\n\"\n",
    )
    .unwrap();
    let mut bash = Command::new("bash");
    bash.args(["-c", &format!("set -eo pipefail\n{script}")])
        .env("CURL_HOME", trial.dir.path());
    let (status, stdout, stderr) = trial.run(bash);

    let (mut out, mut err) = (stdout.as_str(), stderr.as_str());
    for (i, step) in steps.iter().enumerate() {
        let marker = step_marker_line(i);
        let (Some(out_end), Some(err_end)) = (out.find(&marker), err.find(&marker)) else {
            panic!(
                "the README's example failed ({status}):\n{step}\n--- stdout:\n{out}\n--- stderr:\n{err}\n{}",
                trial.logs()
            );
        };
        check_step(step, &out[..out_end], &err[..err_end], trial.dir.path());
        out = &out[out_end + marker.len()..];
        err = &err[err_end + marker.len()..];
    }
    assert!(status.success(), "{status}: {stderr}");
    trial.assert_no_violation();
}

#[test]
fn the_python_sdk_example_of_the_offline_trial_runs() {
    if !tools_present(&[(
        "python3",
        &["-c", "import openai"],
        "python3 with `openai` (pip install openai)",
    )]) {
        return;
    }
    let trial = OfflineTrial::start();
    let block = fenced(offline_section(), "### OpenAI SDK (Python)", "python");
    let script = trial.dir.path().join("readme.py");
    std::fs::write(&script, trial.rewrite(block)).unwrap();
    let mut python = Command::new("python3");
    python.arg(&script);
    let (status, stdout, stderr) = trial.run(python);
    assert!(status.success(), "{status}\n{stdout}\n{stderr}\n{}", trial.logs());
    assert!(stdout.contains(&answer_prefix()), "{stdout}");
    assert!(stdout.contains(&transcript_marker()), "{stdout}");
    trial.assert_no_violation();
}

/// Checks what one paragraph of the curl block printed and wrote.
fn check_step(step: &str, stdout: &str, stderr: &str, dir: &Path) {
    let statuses: Vec<&str> = stderr.lines().filter_map(|line| line.strip_prefix("@@http ")).collect();
    let calls = step.split_whitespace().filter(|word| word.ends_with("curl")).count();
    assert_eq!(statuses.len(), calls, "one status per call:\n{step}\n{stderr}");
    assert!(
        statuses.iter().all(|status| *status == "200"),
        "{statuses:?}:\n{step}\n{stdout}\n{stderr}"
    );
    for file in option_values(step, "-o") {
        let bytes = std::fs::read(dir.join(&file)).unwrap_or_default();
        let audio = match file.rsplit_once('.').map(|(_, extension)| extension) {
            Some("mp3") => bytes.starts_with(b"ID3") || bytes.first() == Some(&0xFF),
            Some("wav") => bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WAVE"),
            _ => !bytes.is_empty(),
        };
        assert!(
            audio,
            "{file} ({} bytes) is not what its name says:\n{step}",
            bytes.len()
        );
    }
    let route = route(step);
    match route.as_str() {
        "/v1/chat/completions" if stdout.contains("data: ") => {
            let events: Vec<&str> = stdout.lines().filter_map(|line| line.strip_prefix("data: ")).collect();
            assert_eq!(events.last(), Some(&"[DONE]"), "{stdout}");
            let content: String = events[..events.len() - 1]
                .iter()
                .map(|event| serde_json::from_str::<Value>(event).unwrap())
                .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
                .collect();
            assert!(content.starts_with(&answer_prefix()), "{stdout}");
            if step.contains(r#""include_usage": true"#) {
                assert!(stdout.contains(r#""usage":{"#), "usage at the end: {stdout}");
            }
        }
        "/v1/chat/completions" => {
            let answers: Vec<Value> = serde_json::Deserializer::from_str(stdout)
                .into_iter()
                .collect::<Result<_, _>>()
                .unwrap_or_else(|error| panic!("{error}: {stdout}"));
            assert!(!answers.is_empty(), "no answer printed:\n{step}");
            for answer in answers {
                assert_eq!(answer["object"], "chat.completion", "{answer}");
                let content = answer["choices"][0]["message"]["content"].as_str().unwrap_or("");
                assert!(content.starts_with(&answer_prefix()), "{answer}");
            }
        }
        "/v1/audio/speech" => assert!(stdout.is_empty(), "the audio goes to the files: {stdout}"),
        "/v1/audio/transcriptions" => {
            assert!(stdout.contains(&transcript_marker()), "{stdout}");
            if step.contains("response_format=srt") {
                assert!(stdout.starts_with("1\n") && stdout.contains(" --> "), "{stdout}");
            }
        }
        "/token/check" => {
            let answer: Value = serde_json::from_str(stdout).unwrap();
            assert_eq!(answer["live"], true, "{answer}");
        }
        other => panic!("the README calls {other}: say here what a sensible answer to it is"),
    }
}

/// The one route a paragraph of the curl block calls.
fn route(step: &str) -> String {
    let mut routes: Vec<&str> = step
        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .filter_map(|word| word.strip_prefix("http://"))
        .filter_map(|rest| rest.find('/').map(|slash| &rest[slash..]))
        .collect();
    routes.sort_unstable();
    routes.dedup();
    let [route] = routes.as_slice() else {
        panic!("each paragraph of the curl block calls one route: {routes:?}\n{step}");
    };
    (*route).to_owned()
}

/// `echo`es the end of step `i` on stdout and on stderr.
fn step_marker(i: usize) -> String {
    let line = step_marker_line(i);
    format!("printf '{line}'; printf '{line}' >&2")
}

fn step_marker_line(i: usize) -> String {
    format!("\n@@step {i} done\n")
}

/// The beginning of every answer of the simulator.
fn answer_prefix() -> String {
    Simulator::answer_for("")
}

/// The end of every transcript of the simulator, `（N.N 秒的语音）`.
fn transcript_marker() -> String {
    let zero = Simulator::transcript_for(Duration::ZERO);
    zero.trim_start_matches(['（', '0', '.']).to_owned()
}

/// Whether each `(tool, arguments, what it stands for)` runs; when one does not, says so
/// and, under `CI=true`, fails.
fn tools_present(tools: &[(&str, &[&str], &str)]) -> bool {
    for (tool, args, what) in tools {
        let ran = Command::new(tool)
            .args(*args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !ran.is_ok_and(|status| status.success()) {
            let reason = format!("the README's examples need {what}, which does not run here");
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{reason}");
            }
            eprintln!("skipped: {reason}");
            return false;
        }
    }
    true
}
