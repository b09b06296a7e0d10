//! core/v1 ServiceAccount.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::Kind;

pub struct ServiceAccounts;

impl Kind for ServiceAccounts {
    type Obj = ServiceAccount;
    const SINGULAR: &'static str = "serviceaccount";
    const SHORT_NAMES: &'static [&'static str] = &["sa"];
}
