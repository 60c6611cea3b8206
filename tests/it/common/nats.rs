//! A real `nats-server` (Debian's) with JetStream on a loopback port, for the cluster
//! tests: started, stopped and started again on the same port and store directory.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::wait_until;

pub struct Nats {
    pub addr: SocketAddr,
    store: tempfile::TempDir,
    child: Option<Child>,
    /// Cluster arguments (name, route port, routes), for a member of `Nats::cluster`.
    extra: Vec<String>,
    /// The monitoring port of a cluster member.
    pub monitor: Option<SocketAddr>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `nats-server` is on PATH; in CI its absence fails the test instead.
pub fn available() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "nats-server is not on PATH, and CI is set (install Debian's nats-server package)"
        );
        eprintln!("NOTE: nats-server not on PATH; skipping");
    }
    found
}

impl Nats {
    pub fn start() -> Nats {
        let mut n = Nats {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            store: tempfile::tempdir().unwrap(),
            child: None,
            extra: Vec::new(),
            monitor: None,
        };
        n.resume();
        n
    }

    /// A server that speaks TLS only, with this certificate and key (PEM files).
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Nats {
        let mut n = Nats {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            store: tempfile::tempdir().unwrap(),
            child: None,
            extra: vec![
                "--tls".into(),
                "--tlscert".into(),
                cert.display().to_string(),
                "--tlskey".into(),
                key.display().to_string(),
            ],
            monitor: None,
        };
        n.resume();
        n
    }

    /// `size` servers routed into one NATS cluster with clustered JetStream (a RAFT
    /// group: a bucket with `replicas = 3` survives the loss of one).
    pub fn cluster(size: usize) -> Vec<Nats> {
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let all = routes
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut out: Vec<Nats> = routes
            .iter()
            .enumerate()
            .map(|(i, route)| {
                let monitor = SocketAddr::from(([127, 0, 0, 1], free_port()));
                Nats {
                    addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
                    store: tempfile::tempdir().unwrap(),
                    child: None,
                    monitor: Some(monitor),
                    extra: vec![
                        "-m".into(),
                        monitor.port().to_string(),
                        "-n".into(),
                        format!("node{i}"),
                        "--cluster_name".into(),
                        "gslbtest".into(),
                        "--cluster".into(),
                        format!("nats://127.0.0.1:{route}"),
                        "--routes".into(),
                        all.clone(),
                    ],
                }
            })
            .collect();
        for n in &mut out {
            n.resume();
        }
        // Clients come once the cluster is formed (every member knows the JetStream
        // metadata leader), as in a deployment: a bucket created while the members
        // still elect their first leader can be lost.
        // The first election can take a while on a loaded machine (CI once needed more
        // than 20 s); this waits for the servers, it retries nothing of ours.
        for n in &out {
            let m = n.monitor.unwrap();
            let mut last = String::new();
            wait_until(Duration::from_secs(60), || {
                let r = crate::ops::http(m, "GET", "/jsz", &[]);
                last = format!("{} {}", r.status, r.body);
                r.status == 200 && {
                    let v = r.json();
                    v["meta_cluster"]["leader"].is_string()
                        && v["meta_cluster"]["cluster_size"] == serde_json::json!(size)
                }
            })
            .unwrap_or_else(|| {
                panic!(
                    "the NATS cluster never formed; last /jsz: {last}\nlog:\n{}",
                    n.logs()
                )
            });
        }
        out
    }

    /// The server's log.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.store.path().join("nats.log")).unwrap_or_default()
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    pub fn store_dir(&self) -> PathBuf {
        self.store.path().to_path_buf()
    }

    /// Starts the server (again) on its port and store directory, and waits until it
    /// accepts connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.addr.port().to_string(),
            ])
            .arg("-sd")
            .arg(self.store.path())
            .arg("-l")
            .arg(self.store.path().join("nats.log"))
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let addr = self.addr;
        wait_until(Duration::from_secs(10), || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        })
        .expect("nats-server accepts connections");
    }

    /// Kills the server (SIGKILL: a crash, not a goodbye).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}
