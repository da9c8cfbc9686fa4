//! `hailuo-sim [--host 127.0.0.1] [--port 8100] [--chunk-delay-ms N] [--chunk-chars N]
//! [--tear-pause-us N]`: serves the simulated Hailuo upstream in open mode until Ctrl-C.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hailuo_free_api::sim::{SimConfig, Simulator};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut host: IpAddr = [127, 0, 0, 1].into();
    let mut port: u16 = 8100;
    let mut config = SimConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--host" => host = value.parse()?,
            "--port" => port = value.parse()?,
            "--chunk-delay-ms" => config.chunk_delay = Duration::from_millis(value.parse()?),
            "--chunk-chars" => config.chunk_chars = value.parse()?,
            "--tear-pause-us" => config.tear_pause = Duration::from_micros(value.parse()?),
            other => {
                return Err(format!(
                    "unknown flag {other}; usage: hailuo-sim [--host H] [--port P] [--chunk-delay-ms N] [--chunk-chars N] [--tear-pause-us N]"
                )
                .into());
            }
        }
    }
    let sim = Simulator::start_on(config, SocketAddr::new(host, port)).await?;
    println!("hailuo-sim listening on {}", sim.base_url());
    // Standalone, nobody reads the records the tests inspect: drop them every second, so a
    // long benchmark neither grows the simulator nor pays for its growth.
    let forgetting = sim.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            forgetting.forget_history();
        }
    });
    tokio::signal::ctrl_c().await?;
    sim.shutdown();
    Ok(())
}
