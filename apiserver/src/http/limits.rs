//! kube-apiserver's in-flight limits (`--max-requests-inflight`,
//! `--max-mutating-requests-inflight`): at most so many requests of each class are served
//! at once; one more gets 429 with Retry-After at once rather than queueing. Long-running
//! requests (watches, followed logs) do not count, nor do members of `system:masters`, as
//! in kube-apiserver. And the connection limits the server applies before any request
//! (`ConnectionLimits`: `--max-connections`, `--tls-handshake-timeout`,
//! `--read-header-timeout`; the server's tests are in `http/server_tests.rs`).

use std::sync::Arc;

use http::Method;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// What one connection may take before it is a request: refused beyond
/// `max_connections` (closed as soon as accepted), closed when its TLS handshake takes
/// longer than `handshake_timeout`, or (HTTP/1.1) when a request's headers take longer
/// than `header_read_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub handshake_timeout: std::time::Duration,
    pub header_read_timeout: std::time::Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 10_000,
            handshake_timeout: std::time::Duration::from_secs(10),
            header_read_timeout: std::time::Duration::from_secs(30),
        }
    }
}

pub struct Inflight {
    readonly: Option<Arc<Semaphore>>,
    mutating: Option<Arc<Semaphore>>,
}

fn limit(n: usize) -> Option<Arc<Semaphore>> {
    (n > 0).then(|| Arc::new(Semaphore::new(n)))
}

impl Inflight {
    /// 0 means no limit for that class.
    pub fn new(readonly: usize, mutating: usize) -> Self {
        Inflight {
            readonly: limit(readonly),
            mutating: limit(mutating),
        }
    }

    /// A slot for a request, held until it is answered; None when it is not limited.
    pub fn admit(&self, method: &Method) -> Result<Option<OwnedSemaphorePermit>, ApiError> {
        let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let sem = if mutating {
            &self.mutating
        } else {
            &self.readonly
        };
        let Some(sem) = sem else {
            return Ok(None);
        };
        match sem.clone().try_acquire_owned() {
            Ok(p) => Ok(Some(p)),
            Err(_) => Err(ApiError::TooManyRequests(
                "Too many requests, please try again later.".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_class_refuses_and_frees_its_slots() {
        let f = Inflight::new(1, 2);
        let r = f.admit(&Method::GET).ok().flatten();
        assert!(r.is_some());
        assert!(matches!(
            f.admit(&Method::GET),
            Err(ApiError::TooManyRequests(_))
        ));
        // Writes are their own class.
        let w1 = f.admit(&Method::POST).ok().flatten();
        let w2 = f.admit(&Method::PATCH).ok().flatten();
        assert!(w1.is_some() && w2.is_some());
        assert!(f.admit(&Method::DELETE).is_err());
        drop(r);
        assert!(f.admit(&Method::GET).is_ok());
        let unlimited = Inflight::new(0, 0);
        assert!(matches!(unlimited.admit(&Method::PUT), Ok(None)));
    }
}
