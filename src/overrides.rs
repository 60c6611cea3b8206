//! Operator overrides: drain, force up, force down, for a whole gateway (every service
//! it serves) or for one endpoint (service + gateway). A layer of its own that probes
//! never write to; it survives reloads (it is keyed by names, not indices) and restarts
//! (it is saved to a state file on every change).
//!
//! `ready = (healthy || forced up) && !forced down && !drained`; an endpoint override
//! beats a gateway override.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::Plan;

/// Why the state file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("{0}")]
    Read(io::Error),
    #[error(
        "the file is empty, not a state file (restore it, or delete it to start without overrides)"
    )]
    Empty,
    /// `line` and `column` are 1-based, as serde_json counts them.
    #[error("{line}:{column}: {why} (restore it, or delete it to start without overrides)")]
    Parse {
        line: usize,
        column: usize,
        why: String,
    },
}

/// Why an override call was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    #[error("unknown gateway {0:?}")]
    UnknownGateway(String),
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("service {service} has no endpoint on gateway {gateway:?}")]
    NoSuchEndpoint { service: String, gateway: String },
    #[error("cannot save state file {}: {why}; nothing changed", path.display())]
    Save { path: PathBuf, why: String },
    /// The cluster's shared store did not take the change, so no replica applies it.
    #[error("{why}; nothing changed on any replica")]
    Store { why: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    /// Out of answers (even fail-open ones), still probed.
    Drain,
    /// Treated as healthy whatever the probes say.
    ForceUp,
    /// Treated as unhealthy whatever the probes say.
    ForceDown,
}

impl AdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdminState::Drain => "drain",
            AdminState::ForceUp => "force_up",
            AdminState::ForceDown => "force_down",
        }
    }
}

/// What an override applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Gateway(String),
    Endpoint { service: String, gateway: String },
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overrides {
    /// By gateway name.
    #[serde(default)]
    pub gateways: BTreeMap<String, AdminState>,
    /// By service name (FQDN with trailing dot), then gateway name.
    #[serde(default)]
    pub endpoints: BTreeMap<String, BTreeMap<String, AdminState>>,
}

impl Overrides {
    /// No override at all.
    pub fn is_empty(&self) -> bool {
        self.gateways.is_empty() && self.endpoints.is_empty()
    }

    /// Sets (`Some`) or clears (`None`) the override of `scope`. Returns whether
    /// anything changed.
    pub fn set(&mut self, scope: &Scope, state: Option<AdminState>) -> bool {
        match scope {
            Scope::Gateway(g) => match state {
                Some(s) => self.gateways.insert(g.clone(), s) != Some(s),
                None => self.gateways.remove(g).is_some(),
            },
            Scope::Endpoint { service, gateway } => match state {
                Some(s) => {
                    self.endpoints
                        .entry(service.clone())
                        .or_default()
                        .insert(gateway.clone(), s)
                        != Some(s)
                }
                None => {
                    let Some(m) = self.endpoints.get_mut(service) else {
                        return false;
                    };
                    let changed = m.remove(gateway).is_some();
                    if m.is_empty() {
                        self.endpoints.remove(service);
                    }
                    changed
                }
            },
        }
    }

    /// Whether `plan` has what `scope` names. Clearing an override that exists is
    /// always allowed, even when a reload removed its gateway or service: otherwise it
    /// could never be cleared and would come back with the name.
    pub fn check(
        &self,
        plan: &Plan,
        scope: &Scope,
        state: Option<AdminState>,
    ) -> Result<(), OverrideError> {
        let clearing_existing = state.is_none()
            && match scope {
                Scope::Gateway(g) => self.gateways.contains_key(g),
                Scope::Endpoint { service, gateway } => self
                    .endpoints
                    .get(service)
                    .is_some_and(|m| m.contains_key(gateway)),
            };
        if clearing_existing {
            return Ok(());
        }
        match scope {
            Scope::Gateway(g) => {
                if !plan.gateways.iter().any(|x| x.name == *g) {
                    return Err(OverrideError::UnknownGateway(g.clone()));
                }
            }
            Scope::Endpoint { service, gateway } => {
                let svc = plan
                    .services
                    .iter()
                    .find(|s| s.name.to_string() == *service)
                    .ok_or_else(|| OverrideError::UnknownService(service.clone()))?;
                if !svc
                    .endpoints
                    .iter()
                    .any(|e| plan.gateways[e.gateway].name == *gateway)
                {
                    return Err(OverrideError::NoSuchEndpoint {
                        service: service.clone(),
                        gateway: gateway.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The effective override of `gateway` within `service`.
    pub fn effective(&self, service: &str, gateway: &str) -> Option<AdminState> {
        self.endpoints
            .get(service)
            .and_then(|m| m.get(gateway))
            .or_else(|| self.gateways.get(gateway))
            .copied()
    }

    /// Loads the state file; a missing file is no overrides. Anything else that is
    /// not a state file this version wrote (empty, corrupt, unknown keys from a newer
    /// version) is an error: starting without the drains it holds would send traffic
    /// to gateways under maintenance.
    pub fn load(path: &Path) -> Result<Overrides, StateFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Overrides::default()),
            Err(e) => return Err(StateFileError::Read(e)),
        };
        if text.trim().is_empty() {
            return Err(StateFileError::Empty);
        }
        serde_json::from_str(&text).map_err(|e| StateFileError::Parse {
            line: e.line(),
            column: e.column(),
            why: e.to_string(),
        })
    }

    /// Whether a save to `path` could work: its directory exists and takes a new file.
    pub fn check_writable(path: &Path) -> io::Result<()> {
        let probe = temp_path(path, u64::MAX)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)?;
        std::fs::remove_file(&probe)
    }

    /// Saves atomically: write a temporary file of its own beside it (a name no
    /// `state_file` can have, so it never truncates the real one), fsync it, rename it
    /// over the file, and fsync the directory so that the rename itself survives a
    /// crash.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        use std::io::Write;
        use std::sync::atomic::{AtomicU64, Ordering};
        static SAVES: AtomicU64 = AtomicU64::new(0);
        let tmp = temp_path(path, SAVES.fetch_add(1, Ordering::Relaxed))?;
        let written = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)?.sync_all()
    }
}

/// The temporary file save `n` of this process writes before renaming it to `path`:
/// beside it, and never `path` itself whatever it is called.
fn temp_path(path: &Path, n: u64) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let mut tmp = name.to_os_string();
    tmp.push(format!(".{}.{n}.partial", std::process::id()));
    Ok(path.with_file_name(tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_beats_gateway() {
        let mut o = Overrides::default();
        assert!(o.set(&Scope::Gateway("g".into()), Some(AdminState::Drain)));
        assert_eq!(o.effective("s.", "g"), Some(AdminState::Drain));
        let ep = Scope::Endpoint {
            service: "s.".into(),
            gateway: "g".into(),
        };
        assert!(o.set(&ep, Some(AdminState::ForceUp)));
        assert_eq!(o.effective("s.", "g"), Some(AdminState::ForceUp));
        assert_eq!(o.effective("t.", "g"), Some(AdminState::Drain));
        assert!(!o.set(&ep, Some(AdminState::ForceUp)));
        assert!(o.set(&ep, None));
        assert!(o.endpoints.is_empty());
    }

    #[test]
    fn round_trips_through_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert_eq!(Overrides::load(&path).unwrap(), Overrides::default());
        let mut o = Overrides::default();
        o.set(
            &Scope::Gateway("edge-1".into()),
            Some(AdminState::ForceDown),
        );
        o.save(&path).unwrap();
        assert_eq!(Overrides::load(&path).unwrap(), o);
        // Saved again over itself; nothing but the file is left in the directory.
        o.save(&path).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    /// A state file named like a temporary file is not written in place by its save
    /// (a crash mid-write would lose it): the temporary file is another one beside it.
    #[test]
    fn a_tmp_named_state_file_survives_its_save() {
        for p in ["x.tmp", "state.json", "/var/lib/gslb/state", "a.partial"] {
            let p = Path::new(p);
            let t = temp_path(p, 0).unwrap();
            assert_ne!(t, p);
            assert_eq!(t.parent(), p.parent());
            assert_ne!(temp_path(p, 1).unwrap(), t);
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.tmp");
        let mut o = Overrides::default();
        o.set(&Scope::Gateway("a".into()), Some(AdminState::Drain));
        o.save(&path).unwrap();
        o.set(&Scope::Gateway("b".into()), Some(AdminState::Drain));
        o.save(&path).unwrap();
        assert_eq!(Overrides::load(&path).unwrap(), o);
    }

    #[test]
    fn unreadable_state_files_are_errors_with_a_location() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "").unwrap();
        assert!(matches!(Overrides::load(&path), Err(StateFileError::Empty)));
        std::fs::write(
            &path,
            "{\"gateways\": {\"a\": \"drain\"},\n  \"version\": 2}\n",
        )
        .unwrap();
        match Overrides::load(&path) {
            Err(e @ StateFileError::Parse { line: 2, .. }) => {
                assert!(e.to_string().contains("unknown field `version`"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, "{\"gateways\": {\"a\": \"drai").unwrap();
        assert!(matches!(
            Overrides::load(&path),
            Err(StateFileError::Parse { line: 1, .. })
        ));
        assert!(Overrides::check_writable(&path).is_ok());
        assert!(Overrides::check_writable(&dir.path().join("no/such/dir/state.json")).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_failed_save_leaves_no_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone").join("state.json");
        assert!(Overrides::default().save(&path).is_err());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
