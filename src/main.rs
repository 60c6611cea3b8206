//! The `gslb` command: parse the CLI, set up logging, run, print an error once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use tracing::info;

use gslb::config;
use gslb::dns::server;

const USAGE: &str = "\
gslb: authoritative DNS for global server load balancing, with health checks

USAGE:
    gslb serve -c FILE [--log-format text|json]   serve DNS for the zones in FILE
    gslb check -c FILE                            validate FILE and exit (0 = valid)
    gslb demo                                     run the embedded quick-start with two toy gateways
    gslb version

Logging: RUST_LOG overrides the default filter (info, hickory=warn).";

struct Args {
    command: String,
    config: Option<PathBuf>,
    json_logs: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let command = it.next().unwrap_or_else(|| "help".into());
    let mut args = Args {
        command,
        config: None,
        json_logs: false,
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "-c" | "--config" => {
                args.config = Some(it.next().context("-c needs a file")?.into());
            }
            "--log-format" => match it.next().as_deref() {
                Some("json") => args.json_logs = true,
                Some("text") => args.json_logs = false,
                other => bail!("--log-format takes text or json, not {other:?}"),
            },
            other => bail!("unexpected argument {other:?}\n\n{USAGE}"),
        }
    }
    Ok(args)
}

fn init_logging(json: bool) {
    use tracing_subscriber::EnvFilter;
    // hickory logs per query at INFO; that costs throughput and says nothing we don't.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hickory_server=warn,hickory_proto=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("gslb: {e:#}");
            return ExitCode::from(2);
        }
    };
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gslb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    match args.command.as_str() {
        "serve" => {
            init_logging(args.json_logs);
            let path = args.config.context("serve needs -c FILE")?;
            let plan = config::load(&path)?;
            serve(plan, false)
        }
        "check" => {
            let path = args.config.context("check needs -c FILE")?;
            let plan = config::load(&path)?;
            println!(
                "{}: ok ({} zones, {} gateways, {} checks, {} services, {} probe targets)",
                path.display(),
                plan.zones.len(),
                plan.gateways.len(),
                plan.checks.len(),
                plan.services.len(),
                plan.targets.len()
            );
            Ok(())
        }
        "demo" => {
            init_logging(args.json_logs);
            let plan = config::parse(
                Path::new("<embedded quickstart.toml>"),
                gslb::demo::QUICKSTART,
            )?;
            serve(plan, true)
        }
        "version" | "--version" | "-V" => {
            println!("gslb {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn serve(plan: gslb::plan::Plan, demo: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    rt.block_on(async move {
        if demo {
            let addrs: Vec<_> = plan.targets.iter().map(|t| t.addr).collect();
            gslb::demo::start_gateways(&addrs)
                .await
                .context("cannot start the demo gateways")?;
        }
        let per_addr = match plan.server.udp_sockets {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let sockets = server::bind(&plan.server.listen, per_addr)?;
        for addr in sockets.local_addrs() {
            // Tests and scripts read this line to learn a port-0 address.
            println!("gslb: listening on {addr} (udp, tcp)");
            info!(%addr, "listening (udp, tcp)");
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        gslb::serve::run(Arc::new(plan), sockets, shutdown).await
    })
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    shutdown.cancel();
}
