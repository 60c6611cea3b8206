//! Why a probe failed, and why one could not be built. Each failure prints as the
//! reason of a log line (`http 503 "no healthy upstreams"`, `connect refused`) and maps
//! to the `outcome` label of the probe metric, so the two never disagree.

use std::time::Duration;

use crate::metrics::ProbeOutcome;
use crate::plan::{InvalidHost, ShowDuration};

/// The result of one probe.
pub type ProbeResult = Result<(), ProbeFailure>;

/// Why one probe failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeFailure {
    /// No verdict within the check's timeout.
    #[error("timeout after {}", ShowDuration(*.0))]
    Timeout(Duration),
    /// The HTTP client gave up on its own (it has no timeout of its own configured, so
    /// this is rare).
    #[error("timeout")]
    ClientTimeout,
    /// A socket error while connecting, handshaking or talking HTTP.
    #[error("{0}")]
    Io(IoFailure),
    /// The TLS handshake failed, or the server's certificate was rejected.
    #[error("{0}")]
    Tls(TlsFailure),
    /// A status the check does not accept, with the start of the body.
    #[error("http {status} {body:?}")]
    Status { status: u16, body: String },
    /// The expected text is not within the first `limit` bytes of the body.
    #[error("http {status} body lacks {expected:?} in its first {limit} bytes")]
    BodyMismatch {
        status: u16,
        expected: String,
        limit: usize,
    },
    /// The status was fine but the body broke off.
    #[error("http {status} body read failed: {cause}")]
    BodyRead {
        status: u16,
        cause: Box<ProbeFailure>,
    },
    /// Any other error of the HTTP client, with its chain of causes.
    #[error("{0}")]
    Http(String),
    /// The probe could not be built; the target stays DOWN until a config fixes it.
    #[error("probe cannot start: {0}")]
    CannotStart(SetupError),
}

impl ProbeFailure {
    /// A failure of this process, not of the target (no descriptor, no buffer): it is
    /// no verdict about the target.
    pub fn is_local(&self) -> bool {
        match self {
            ProbeFailure::Io(IoFailure {
                kind: IoKind::LocalResource(_),
                ..
            }) => true,
            ProbeFailure::BodyRead { cause, .. } => cause.is_local(),
            _ => false,
        }
    }

    /// The `outcome` label this failure is counted under.
    pub fn outcome(&self) -> ProbeOutcome {
        match self {
            ProbeFailure::Timeout(_) | ProbeFailure::ClientTimeout => ProbeOutcome::Timeout,
            _ => ProbeOutcome::Failure,
        }
    }
}

/// Where in a probe a socket error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connect,
    TlsHandshake,
    Http,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::TlsHandshake => "tls handshake",
            Stage::Http => "http",
        }
    }
}

/// A socket error: `connect refused`, `tls handshake reset`, `http: <error>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.describe())]
pub struct IoFailure {
    pub stage: Stage,
    pub kind: IoKind,
}

/// The kinds of socket error a reason names; anything else keeps the error's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IoKind {
    Refused,
    Reset,
    Aborted,
    TimedOut,
    HostUnreachable,
    NetworkUnreachable,
    ClosedEarly,
    /// This process or host ran out of something (descriptors, buffers, memory): the
    /// error says nothing about the target.
    LocalResource(&'static str),
    Other(String),
}

impl IoFailure {
    pub fn new(stage: Stage, e: &std::io::Error) -> IoFailure {
        use std::io::ErrorKind as E;
        // EMFILE, ENFILE, ENOBUFS, ENOMEM (Linux numbers).
        let local = match e.raw_os_error() {
            Some(24) => Some("out of file descriptors (EMFILE)"),
            Some(23) => Some("system out of file descriptors (ENFILE)"),
            Some(105) => Some("out of socket buffers (ENOBUFS)"),
            Some(12) => Some("out of memory (ENOMEM)"),
            _ => None,
        };
        if let Some(what) = local {
            return IoFailure {
                stage,
                kind: IoKind::LocalResource(what),
            };
        }
        let kind = match e.kind() {
            E::ConnectionRefused => IoKind::Refused,
            E::ConnectionReset => IoKind::Reset,
            E::ConnectionAborted => IoKind::Aborted,
            E::TimedOut => IoKind::TimedOut,
            E::HostUnreachable => IoKind::HostUnreachable,
            E::NetworkUnreachable => IoKind::NetworkUnreachable,
            E::UnexpectedEof => IoKind::ClosedEarly,
            _ => IoKind::Other(e.to_string()),
        };
        IoFailure { stage, kind }
    }

    fn describe(&self) -> String {
        let what = match &self.kind {
            IoKind::Refused => "refused",
            IoKind::Reset => "reset",
            IoKind::Aborted => "aborted",
            IoKind::TimedOut => "timed out",
            IoKind::HostUnreachable => "host unreachable",
            IoKind::NetworkUnreachable => "network unreachable",
            IoKind::ClosedEarly => "closed early",
            IoKind::LocalResource(what) => what,
            IoKind::Other(e) => return format!("{}: {e}", self.stage.as_str()),
        };
        format!("{} {what}", self.stage.as_str())
    }
}

impl From<IoFailure> for ProbeFailure {
    fn from(e: IoFailure) -> Self {
        ProbeFailure::Io(e)
    }
}

/// A failed handshake, as precisely as rustls tells it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsFailure {
    #[error("tls certificate expired")]
    Expired,
    #[error("tls certificate not valid yet")]
    NotValidYet,
    /// The certificate does not cover the name we verify (SNI, or the probe IP).
    #[error("tls certificate not valid for {0}")]
    WrongName(String),
    #[error("tls certificate from an unknown issuer")]
    UnknownIssuer,
    #[error("tls certificate has a bad signature")]
    BadSignature,
    #[error("tls certificate revoked")]
    Revoked,
    #[error("tls certificate rejected: {0}")]
    Rejected(String),
    #[error("tls alert from server: {0}")]
    Alert(String),
    #[error("tls handshake: {0}")]
    Handshake(String),
}

impl From<TlsFailure> for ProbeFailure {
    fn from(e: TlsFailure) -> Self {
        ProbeFailure::Tls(e)
    }
}

/// Why a probe could not be built from its check. Validation should catch all of
/// these; if one slips through, the target is DOWN with it as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    #[error("tls check without tls settings")]
    NoTlsSettings,
    #[error("not an http check")]
    NotHttp,
    #[error("invalid server name {name:?}: {reason}")]
    ServerName { name: String, reason: String },
    #[error(transparent)]
    Host(#[from] InvalidHost),
    /// A certificate of the CA bundle that rustls does not take as a trust anchor.
    #[error("{path}: {reason}")]
    CaCertificate { path: String, reason: String },
    #[error("tls: {0}")]
    Tls(String),
    #[error("cannot form URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("invalid method or header: {0}")]
    Request(String),
    #[error("cannot build HTTP client: {0}")]
    Client(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_before() {
        let io = |stage, kind| ProbeFailure::Io(IoFailure { stage, kind });
        let cases: [(ProbeFailure, &str, ProbeOutcome); 7] = [
            (
                ProbeFailure::Timeout(Duration::from_millis(200)),
                "timeout after 200ms",
                ProbeOutcome::Timeout,
            ),
            (
                io(Stage::Connect, IoKind::Refused),
                "connect refused",
                ProbeOutcome::Failure,
            ),
            (
                io(Stage::TlsHandshake, IoKind::Reset),
                "tls handshake reset",
                ProbeOutcome::Failure,
            ),
            (
                io(Stage::Http, IoKind::Other("boom".into())),
                "http: boom",
                ProbeOutcome::Failure,
            ),
            (
                ProbeFailure::Status {
                    status: 503,
                    body: "no healthy upstreams".into(),
                },
                "http 503 \"no healthy upstreams\"",
                ProbeOutcome::Failure,
            ),
            (
                ProbeFailure::BodyMismatch {
                    status: 200,
                    expected: "ok".into(),
                    limit: 10_000,
                },
                "http 200 body lacks \"ok\" in its first 10000 bytes",
                ProbeOutcome::Failure,
            ),
            (
                TlsFailure::WrongName("gw.test".into()).into(),
                "tls certificate not valid for gw.test",
                ProbeOutcome::Failure,
            ),
        ];
        for (failure, text, outcome) in cases {
            assert_eq!(failure.to_string(), text);
            assert_eq!(failure.outcome(), outcome, "{text}");
        }
        assert_eq!(
            ProbeFailure::CannotStart(SetupError::NoTlsSettings).to_string(),
            "probe cannot start: tls check without tls settings"
        );
    }
}
