//! The `gslb` command: parse the CLI, set up logging, run, print an error once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use gslb::config;
use gslb::dns::{Handler, server};
use gslb::metrics::Metrics;
use gslb::publisher::Publisher;

const USAGE: &str = "\
gslb: authoritative DNS for global server load balancing, with health checks

USAGE:
    gslb serve -c FILE [--log-format text|json]   serve DNS for the zones in FILE
    gslb check -c FILE                            validate FILE and exit (0 = valid)
    gslb explain -c FILE NAME [--client IP] [--ecs ADDR/LEN]
                                                  show how NAME would be answered (all endpoints
                                                  assumed healthy; GET /v1/explain shows live state)
    gslb demo                                     run the embedded quick-start with two toy gateways
    gslb version

Signals (serve): SIGHUP reloads FILE (a bad file is rejected, the old config keeps
serving); SIGTERM or SIGINT stops accepting, lets TCP queries in flight finish within
[server] grace_period, and exits 0.
Logging: RUST_LOG overrides the default filter (info, hickory=warn).";

struct Args {
    command: String,
    config: Option<PathBuf>,
    json_logs: bool,
    /// explain: the name, the client address, the ECS prefix.
    name: Option<String>,
    client: Option<String>,
    ecs: Option<String>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut it = std::env::args().skip(1);
    let command = it.next().unwrap_or_else(|| "help".into());
    let mut args = Args {
        command,
        config: None,
        json_logs: false,
        name: None,
        client: None,
        ecs: None,
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
            "--client" => args.client = Some(it.next().context("--client needs an address")?),
            "--ecs" => args.ecs = Some(it.next().context("--ecs needs ADDRESS/PREFIX")?),
            other
                if args.command == "explain" && args.name.is_none() && !other.starts_with('-') =>
            {
                args.name = Some(other.to_string());
            }
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
    // Colour only for a person at a terminal, never into files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
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
            serve(plan, Some(path), false)
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
            serve(plan, None, true)
        }
        "explain" => {
            let path = args.config.context("explain needs -c FILE")?;
            let name = args.name.context("explain needs a NAME")?;
            let client: std::net::IpAddr = match &args.client {
                Some(c) => c
                    .parse()
                    .with_context(|| format!("--client {c:?} is not an IP address"))?,
                None => std::net::Ipv4Addr::LOCALHOST.into(),
            };
            let plan = Arc::new(config::load(&path)?);
            let metrics = gslb::metrics::Metrics::new();
            let snap = gslb::snapshot::Snapshot::build(
                plan.clone(),
                Arc::new(gslb::snapshot::Zones::build(&plan)),
                Arc::new(metrics.for_plan(&plan)),
                &vec![true; plan.targets.len()],
                &gslb::overrides::Overrides::default(),
            );
            let e = gslb::explain::explain(&snap, &name, client, args.ecs.as_deref())
                .map_err(anyhow::Error::msg)?;
            println!(
                "(offline: every endpoint assumed healthy; GET /v1/explain on the admin listener shows the live state)"
            );
            print!("{e}");
            Ok(())
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

fn serve(plan: gslb::plan::Plan, path: Option<PathBuf>, demo: bool) -> anyhow::Result<()> {
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
        let admin_listener = match &plan.admin {
            Some(a) => Some(
                tokio::net::TcpListener::bind(a.listen)
                    .await
                    .with_context(|| format!("cannot bind the admin listener {}", a.listen))?,
            ),
            None => None,
        };
        let limits = server::TcpLimits {
            idle_timeout: plan.server.tcp_idle_timeout,
            max_connections: plan.server.tcp_max_connections,
        };
        let grace = plan.server.grace_period;
        let admin_token = plan.admin.as_ref().and_then(|a| a.token.clone());

        let runtime = Publisher::start(plan, path, Metrics::new())?;
        let shutdown = CancellationToken::new();
        // Before the "listening" lines: whoever reads them may signal at once, and a
        // SIGHUP or SIGTERM without a handler installed kills the process.
        tokio::spawn(handle_signals(runtime.clone(), shutdown.clone()));
        for addr in sockets.local_addrs() {
            // Tests and scripts read these lines to learn port-0 addresses.
            println!("gslb: listening on {addr} (udp, tcp)");
            info!(%addr, "DNS listening (udp, tcp)");
        }
        if let Some(l) = admin_listener {
            let addr = l.local_addr()?;
            println!("gslb: admin listening on {addr}");
            info!(%addr, "admin listening");
            tokio::spawn(gslb::admin::serve(
                l,
                runtime.clone(),
                admin_token,
                shutdown.clone(),
            ));
        }

        let handler = Arc::new(Handler::new(runtime.shared()));
        let dns = tokio::spawn(server::run(sockets, handler, limits, shutdown.clone()));
        shutdown.cancelled().await;
        match tokio::time::timeout(grace, dns).await {
            Ok(Ok(r)) => r?,
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => {
                warn!("grace period of {grace:?} over; closing the remaining TCP connections")
            }
        }
        info!("stopped");
        Ok(())
    })
}

/// SIGHUP reloads; SIGTERM and SIGINT start the shutdown.
/// The handlers are installed when this is called, not when the returned future first
/// runs.
fn handle_signals(
    runtime: Arc<Publisher>,
    shutdown: CancellationToken,
) -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler");
    async move {
        loop {
            tokio::select! {
                _ = term.recv() => {
                    info!("SIGTERM: no longer accepting; finishing queries in flight");
                    break;
                }
                _ = int.recv() => {
                    info!("SIGINT: no longer accepting; finishing queries in flight");
                    break;
                }
                _ = hup.recv() => {
                    info!("SIGHUP: reloading");
                    // `reload` logs its outcome; a rejected file keeps the old config.
                    // It parses and starts probes synchronously, so keep it off the
                    // threads that serve DNS.
                    let rt = runtime.clone();
                    let _ = tokio::task::spawn_blocking(move || rt.reload()).await;
                }
            }
        }
        shutdown.cancel();
    }
}
