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
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut n = Nats {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            store: tempfile::tempdir().unwrap(),
            child: None,
        };
        n.resume();
        n
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
