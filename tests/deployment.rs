//! The deployment files hold together: the compose file parses and wires what the README
//! promises, and the Dockerfile builds with the README's commands. (No Docker engine runs
//! here; CI also runs `docker-compose config` on the compose file.)

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use yaml_rust2::{Yaml, YamlLoader};

fn read(path: &str) -> String {
    std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).expect(path)
}

fn compose() -> Yaml {
    YamlLoader::load_from_str(&read("docker/docker-compose.yml"))
        .expect("valid YAML")
        .remove(0)
}

#[test]
fn the_compose_service_publishes_8000_keeps_its_data_and_restarts() {
    let compose = compose();
    let service = &compose["services"]["hailuo-free-api"];
    assert_eq!(service["build"]["dockerfile"].as_str(), Some("docker/Dockerfile"));
    assert_eq!(service["ports"][0].as_str(), Some("8000:8000"));
    assert_eq!(service["restart"].as_str(), Some("unless-stopped"));
    let volume = service["volumes"][0].as_str().expect("a volume");
    assert!(volume.ends_with(":/data"));
    assert!(!compose["volumes"][volume.split(':').next().expect("a name")].is_badvalue());
    let environment = &service["environment"];
    assert!(environment["REPLACE_AUDIO_MODEL"].as_str().is_some());
    assert!(
        environment["HAILUO_STORE__URL"]
            .as_str()
            .expect("a store")
            .starts_with("sqlite://")
    );
    for (key, _) in environment.as_hash().expect("a map") {
        let key = key.as_str().expect("a name");
        assert!(key.starts_with("HAILUO_") || key.starts_with("OTEL_") || key == "REPLACE_AUDIO_MODEL" || key == "TZ");
    }
}

#[test]
fn the_telemetry_profile_wires_a_collector_to_jaeger() {
    let compose = compose();
    for name in ["otel-collector", "jaeger"] {
        let service = &compose["services"][name];
        assert_eq!(service["profiles"][0].as_str(), Some("telemetry"), "{name} is opt-in");
    }
    let collector = YamlLoader::load_from_str(&read("docker/otel-collector.yaml"))
        .expect("valid YAML")
        .remove(0);
    assert_eq!(
        collector["exporters"]["otlp/jaeger"]["endpoint"].as_str(),
        Some("jaeger:4317")
    );
    assert_eq!(
        collector["service"]["pipelines"]["traces"]["exporters"][0].as_str(),
        Some("otlp/jaeger")
    );
}

#[test]
fn the_dockerfile_builds_with_the_readme_command_and_runs_as_a_user_with_a_healthcheck() {
    let dockerfile = read("docker/Dockerfile");
    let readme = read("README.md");
    let build = "cargo build --release --locked --workspace";
    assert!(
        dockerfile.contains(&format!("RUN {build}")),
        "the Dockerfile's build stage"
    );
    assert!(readme.contains(build), "the README names the same build command");
    assert!(dockerfile.matches("FROM ").count() >= 2, "multi-stage");
    assert!(dockerfile.contains("\nUSER hailuo"), "a non-root user");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/ping"));
    assert!(dockerfile.contains("VOLUME [\"/data\"]") && dockerfile.contains("EXPOSE 8000"));
}
