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

    /// Loads the state file; a missing file is no overrides.
    pub fn load(path: &Path) -> io::Result<Overrides> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Overrides::default()),
            Err(e) => Err(e),
        }
    }

    /// Saves atomically: write a temporary file beside it, fsync, rename.
    pub fn save(&self, path: &Path) -> io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(serde_json::to_string_pretty(self)?.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
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
    }
}
