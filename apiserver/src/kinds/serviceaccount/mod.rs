//! core/v1 ServiceAccount, and its `token` subresource (`token.rs`).

pub mod token;

use k8s_openapi::api::core::v1::ServiceAccount;

use super::Kind;

pub struct ServiceAccounts;

impl Kind for ServiceAccounts {
    type Obj = ServiceAccount;
    const SINGULAR: &'static str = "serviceaccount";
    const SUBRESOURCES: &'static [super::Subresource] = &[super::Subresource {
        name: "token",
        kind: "TokenRequest",
        group_version: Some(("authentication.k8s.io", "v1")),
        verbs: &["create"],
        action: Some(token::action),
        collection: None,
    }];
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::core::SERVICEACCOUNT);
    const SHORT_NAMES: &'static [&'static str] = &["sa"];
}
