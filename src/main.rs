//! The `gslb` command: parse the CLI, set up logging, run, print an error once.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use gslb::dns::{Handler, server};
use gslb::{config, limits, metrics::Metrics, publisher::Publisher};

mod memory;

/// Authoritative DNS for global server load balancing, with health checks.
#[derive(Parser)]
#[command(name = "gslb", version)]
struct Cli {
    // None prints the help and exits 0, like `gslb help`.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS for the zones in FILE
    #[command(after_help = SIGNALS)]
    Serve {
        /// The configuration file
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Log lines on stderr; RUST_LOG overrides the filter (info; hickory, async_nats: warn)
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Validate FILE and exit: 0 if valid, else 1 with FILE:LINE:COL: MESSAGE
    Check {
        /// The configuration file
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Show how NAME would be answered
    #[command(after_help = OFFLINE)]
    Explain {
        /// The configuration file
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// The name asked for, e.g. app.gslb.example.com
        name: String,
        /// The address the query comes from
        #[arg(long, value_name = "IP", default_value_t = Ipv4Addr::LOCALHOST.into())]
        client: IpAddr,
        /// The EDNS Client Subnet the query carries, e.g. 198.51.100.0/24
        #[arg(long, value_name = "ADDR/LEN")]
        ecs: Option<String>,
    },
    /// Run the embedded quick-start with two toy gateways
    Demo {
        /// Log lines on stderr; RUST_LOG overrides the filter (info; hickory, async_nats: warn)
        #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Talk to a running server's admin API: state, overrides, reload
    #[command(after_help = CTL)]
    Ctl {
        /// Read the admin address and token from this configuration file
        #[arg(short, long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The admin listener (overrides the file's [admin] listen)
        #[arg(long, value_name = "IP:PORT")]
        admin: Option<SocketAddr>,
        /// The bearer token (overrides the file's token or token_file)
        #[arg(long, value_name = "TOKEN")]
        token: Option<String>,
        #[command(subcommand)]
        action: CtlAction,
    },
    /// Print the version
    Version,
}

#[derive(Subcommand)]
enum CtlAction {
    /// Print every service and endpoint as the server sees them (JSON)
    State,
    /// Re-read the configuration file (like SIGHUP); a bad file is refused
    Reload,
    /// Take a gateway (or one endpoint, with --service) out of every answer
    Drain(OverrideTarget),
    /// Clear the override of a gateway (or of one endpoint)
    Undrain(OverrideTarget),
    /// Treat as healthy whatever the probes say
    ForceUp(OverrideTarget),
    /// Treat as unhealthy whatever the probes say
    ForceDown(OverrideTarget),
}

#[derive(clap::Args)]
struct OverrideTarget {
    /// The gateway's name
    gateway: String,
    /// Only this service's endpoint on the gateway
    #[arg(long, value_name = "NAME")]
    service: Option<String>,
}

const CTL: &str = "\
Examples: gslb ctl -c /etc/gslb/gslb.toml drain edge-eu-1
          gslb ctl -c /etc/gslb/gslb.toml undrain edge-eu-1 --service app.gslb.example.com
          gslb ctl --admin 127.0.0.1:9153 state
Exit 0 when the server accepted the call; 1 with its reason otherwise.";

const SIGNALS: &str = "\
Signals: SIGHUP reloads FILE (a bad file is rejected, the old config keeps serving);
SIGTERM or SIGINT stops accepting, lets TCP queries in flight finish within
[server] grace_period, and exits 0.";
const OFFLINE: &str = "\
Offline, every endpoint is assumed healthy; GET /v1/explain on the admin listener
shows the live state.";

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Installs the subscriber; the writer it returns is flushed when the command ends.
fn init_logging(format: LogFormat) -> LogFlush {
    use tracing_subscriber::EnvFilter;
    // hickory logs per query at INFO; that costs throughput and says nothing we don't.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,hickory_server=warn,hickory_proto=warn,async_nats=warn")
    });
    // Colour only for a person at a terminal, never into files or journald.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer = gslb::logging::stderr();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        // Never std::io::stderr directly: a stalled stderr would stall a DNS loop.
        .with_writer(writer.clone());
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    LogFlush(writer)
}

/// Writes out the queued log lines when dropped (at most a second's wait).
struct LogFlush(gslb::logging::NonBlocking);

impl Drop for LogFlush {
    fn drop(&mut self) {
        self.0.flush(std::time::Duration::from_secs(1));
    }
}

/// Command-line mistakes exit 2 with clap's message (and `--help`, `--version` exit 0);
/// a bad config or a failure while running exits 1 with the error chain, printed once.
fn main() -> ExitCode {
    let Some(command) = Cli::parse().command else {
        let _ = Cli::command().print_help(); // fails only on a closed stdout
        return ExitCode::SUCCESS;
    };
    memory::release_after_each_load();
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gslb: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config, log_format } => {
            let _log = init_logging(log_format);
            let plan = config::load(&config)?;
            serve(plan, Some(config), false)
        }
        Command::Check { config: path } => {
            let plan = config::load(&path)?;
            if let Some(state) = plan.admin.as_ref().and_then(|a| a.state_file.as_ref()) {
                use gslb::overrides::{Overrides, StateFileError};
                match Overrides::load(state) {
                    Ok(_) => {}
                    Err(StateFileError::Parse { line, column, why }) => {
                        anyhow::bail!("{}:{line}:{column}: state file: {why}", state.display())
                    }
                    Err(e) => anyhow::bail!("{}: state file: {e}", state.display()),
                }
                if let Err(e) = Overrides::check_writable(state) {
                    eprintln!(
                        "gslb: warning: state_file {} cannot be written ({e}): drains and forced states would be refused",
                        state.display()
                    );
                }
            }
            // `serve` raises the soft descriptor limit to the hard one: judge by that.
            let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .context("cannot read the file descriptor limit")?;
            let budget = limits::budget(&plan, limits::udp_per_addr(&plan), hard)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            if budget.tcp_lowered(&plan) {
                eprintln!(
                    "gslb: warning: tcp_max_connections {} will be lowered to {} (file descriptor limit {}, {} kept for probes)",
                    plan.server.tcp_max_connections, budget.tcp, budget.limit, budget.probes
                );
            }
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
        Command::Ctl {
            config: path,
            admin,
            token,
            action,
        } => ctl(path, admin, token, action),
        Command::Demo { log_format } => {
            let _log = init_logging(log_format);
            let plan = config::parse(
                Path::new("<embedded quickstart.toml>"),
                gslb::demo::QUICKSTART,
            )?;
            serve(plan, None, true)
        }
        Command::Explain {
            config: path,
            name,
            client,
            ecs,
        } => {
            let plan = Arc::new(config::load(&path)?);
            let metrics = Metrics::new();
            let snap = gslb::snapshot::Snapshot::build(
                plan.clone(),
                Arc::new(gslb::snapshot::Zones::build(&plan)),
                Arc::new(metrics.for_plan(&plan)),
                &vec![true; plan.targets.len()],
                &gslb::overrides::Overrides::default(),
            );
            let e = gslb::explain::explain(&snap, &name, client, ecs.as_deref())
                .map_err(anyhow::Error::msg)?;
            println!(
                "(offline: every endpoint assumed healthy; GET /v1/explain on the admin listener shows the live state)"
            );
            print!("{e}");
            Ok(())
        }
        Command::Version => {
            println!("gslb {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
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
        let per_addr = limits::udp_per_addr(&plan);
        let budget = descriptor_budget(&plan, per_addr)?;
        let sockets = server::bind(&plan.server.listen, per_addr, plan.server.xdp.as_ref())?;
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
            message_timeout: plan.server.tcp_message_timeout,
            max_connections: budget.tcp,
            max_per_source: plan.server.tcp_max_connections_per_source,
        };
        let grace = plan.server.grace_period;
        let admin_settings = plan.admin.clone();

        let metrics = Metrics::new();
        let front = server::FrontMetrics::of(&metrics);
        let cluster = match plan.cluster.clone() {
            Some(c) => Some(
                gslb::cluster::Cluster::start(c, metrics.cluster.clone())
                    .await
                    .map_err(anyhow::Error::msg)?,
            ),
            None => None,
        };
        let runtime = Publisher::start(plan, path, metrics, cluster)?;
        let shutdown = CancellationToken::new();
        // Before the "listening" lines: whoever reads them may signal at once, and a
        // SIGHUP or SIGTERM without a handler installed kills the process.
        tokio::spawn(handle_signals(runtime.clone(), shutdown.clone()));
        for addr in sockets.local_addrs() {
            // Tests and scripts read these lines to learn port-0 addresses.
            println!("gslb: listening on {addr} (udp, tcp)");
            info!(%addr, "DNS listening (udp, tcp)");
        }
        if let (Some(l), Some(settings)) = (admin_listener, admin_settings) {
            let addr = l.local_addr()?;
            println!("gslb: admin listening on {addr}");
            info!(%addr, "admin listening");
            tokio::spawn(gslb::admin::serve(
                l,
                runtime.clone(),
                settings,
                shutdown.clone(),
            ));
        }

        let handler = Arc::new(Handler::new(runtime.shared()));
        let dns = tokio::spawn(server::run(
            sockets,
            handler,
            limits,
            front,
            shutdown.clone(),
        ));
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

/// Raises the soft descriptor limit to the hard one, and shares it out: the probes keep
/// their reserve, the TCP cap gets what is left (said in the log either way).
fn descriptor_budget(
    plan: &gslb::plan::Plan,
    udp_per_addr: usize,
) -> anyhow::Result<limits::Budget> {
    let limit = rlimit::increase_nofile_limit(u64::MAX)
        .context("cannot read or raise the file descriptor limit")?;
    let b = limits::budget(plan, udp_per_addr, limit).map_err(anyhow::Error::msg)?;
    if b.tcp_lowered(plan) {
        warn!(
            configured = plan.server.tcp_max_connections,
            tcp = b.tcp,
            limit = b.limit,
            probes = b.probes,
            "tcp_max_connections lowered so that probes keep their descriptors; raise LimitNOFILE to serve more"
        );
    } else {
        info!(
            limit = b.limit,
            tcp = b.tcp,
            probes = b.probes,
            fixed = b.fixed,
            "file descriptors"
        );
    }
    Ok(b)
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

fn ctl(
    path: Option<PathBuf>,
    admin: Option<SocketAddr>,
    token: Option<String>,
    action: CtlAction,
) -> anyhow::Result<()> {
    use gslb::ctl::{Call, send};
    let from_file = match &path {
        Some(p) => config::load(p)?.admin,
        None => None,
    };
    let addr = admin
        .or(from_file.as_ref().map(|a| a.listen))
        .context("no admin listener: give -c FILE (with an [admin] table) or --admin IP:PORT")?;
    let token = token.or(from_file.and_then(|a| a.token));
    let over = |path: &'static str, t: OverrideTarget| Call::Override {
        path,
        gateway: t.gateway,
        service: t.service,
    };
    let call = match action {
        CtlAction::State => Call::State,
        CtlAction::Reload => Call::Reload,
        CtlAction::Drain(t) => over("/v1/drain", t),
        CtlAction::Undrain(t) => over("/v1/undrain", t),
        CtlAction::ForceUp(t) => over("/v1/force-up", t),
        CtlAction::ForceDown(t) => over("/v1/force-down", t),
    };
    let body = send(addr, token.as_deref(), &call)?;
    print!("{body}");
    Ok(())
}
