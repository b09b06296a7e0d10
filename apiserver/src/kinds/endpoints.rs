//! core/v1 Endpoints.

use k8s_openapi::api::core::v1::Endpoints;

use super::Kind;
use crate::error::FieldError;

pub struct EndpointsKind;

impl Kind for EndpointsKind {
    type Obj = Endpoints;
    const SINGULAR: &'static str = "endpoints";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::core::ENDPOINTS);
    const SHORT_NAMES: &'static [&'static str] = &["ep"];

    fn validate(ep: &Endpoints) -> Vec<FieldError> {
        let mut errs = Vec::new();
        for (i, s) in ep.subsets.iter().flatten().enumerate() {
            for (j, a) in s
                .addresses
                .iter()
                .flatten()
                .chain(s.not_ready_addresses.iter().flatten())
                .enumerate()
            {
                if a.ip.parse::<std::net::IpAddr>().is_err() {
                    errs.push(FieldError::invalid(
                        format!("subsets[{i}].addresses[{j}].ip"),
                        &a.ip,
                        "must be a valid IP address",
                    ));
                }
            }
            for (j, p) in s.ports.iter().flatten().enumerate() {
                if !(1..=65535).contains(&p.port) {
                    errs.push(FieldError::invalid_raw(
                        format!("subsets[{i}].ports[{j}].port"),
                        p.port.to_string(),
                        "must be between 1 and 65535, inclusive",
                    ));
                }
            }
        }
        errs
    }
}
