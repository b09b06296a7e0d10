//! The caller of CRDs' conversion webhooks (`kinds::custom::conversion` builds and checks
//! the reviews): the webhook's URL, or a ready endpoint of its Service from this
//! apiserver's watch cache, over HTTPS trusting only its caBundle, within kube's 30 s.
//!
//! The registry converts objects where it decodes and serves them, which are synchronous
//! steps (inside a guarded update's retry, a watch stream's map); the call is made there
//! with `block_in_place`, so the worker thread waits for the webhook while the runtime
//! moves its other tasks to other threads. That needs the multi-threaded runtime the
//! apiserver runs on; on another, a conversion fails with an error instead.

use std::sync::Arc;

use crate::kinds::custom::conversion::{Caller, Hook, TIMEOUT};
use crate::store::cache::Cache;

use super::call;

pub struct Converter {
    cache: Arc<Cache>,
}

impl Converter {
    pub fn new(cache: Arc<Cache>) -> Arc<Converter> {
        Arc::new(Converter { cache })
    }
}

impl Caller for Converter {
    fn post(&self, hook: &Hook, review: Vec<u8>) -> Result<bytes::Bytes, String> {
        let ep = call::resolve(&self.cache, &hook.client, TIMEOUT)?;
        let ca = hook
            .client
            .ca_bundle
            .as_ref()
            .map(|b| b.0.clone())
            .unwrap_or_default();
        let handle = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        if handle.runtime_flavor() != tokio::runtime::RuntimeFlavor::MultiThread {
            return Err("conversion webhooks need the multi-threaded runtime".into());
        }
        let started = std::time::Instant::now();
        let result =
            tokio::task::block_in_place(|| handle.block_on(call::post(&ep, &ca, review, TIMEOUT)));
        tracing::debug!(
            crd = %hook.crd,
            ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "conversion webhook called"
        );
        result
    }
}
