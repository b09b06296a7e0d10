//! discovery.k8s.io/v1 EndpointSlice.

use k8s_openapi::api::discovery::v1::EndpointSlice;

use super::Kind;
use crate::error::FieldError;

pub struct EndpointSlices;

const MAX_ENDPOINTS: usize = 1000;
const MAX_PORTS: usize = 100;

impl Kind for EndpointSlices {
    type Obj = EndpointSlice;
    const SINGULAR: &'static str = "endpointslice";
    const PRINTER: Option<&'static crate::table::Printer> =
        Some(&crate::table::printers::other::ENDPOINTSLICE);

    fn validate(s: &EndpointSlice) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let types = ["IPv4", "IPv6", "FQDN"];
        if !types.contains(&s.address_type.as_str()) {
            errs.push(FieldError::not_supported(
                "addressType",
                &s.address_type,
                &types,
            ));
        }
        if s.endpoints.len() > MAX_ENDPOINTS {
            errs.push(FieldError::too_many(
                "endpoints",
                s.endpoints.len(),
                MAX_ENDPOINTS,
            ));
        }
        for (i, e) in s.endpoints.iter().enumerate() {
            let f = format!("endpoints[{i}].addresses");
            if e.addresses.is_empty() || e.addresses.len() > 100 {
                errs.push(FieldError::invalid_raw(
                    &f,
                    e.addresses.len().to_string(),
                    "must contain at least 1 and at most 100 addresses",
                ));
            }
            for (j, a) in e.addresses.iter().enumerate() {
                let ok = match s.address_type.as_str() {
                    "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
                    "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                    _ => !a.is_empty(),
                };
                if !ok {
                    errs.push(FieldError::invalid(
                        format!("{f}[{j}]"),
                        a,
                        "must be a valid address of the slice's addressType",
                    ));
                }
            }
        }
        if s.ports.as_ref().is_some_and(|p| p.len() > MAX_PORTS) {
            errs.push(FieldError::too_many(
                "ports",
                s.ports.as_ref().map_or(0, Vec::len),
                MAX_PORTS,
            ));
        }
        errs
    }

    fn validate_update(new: &EndpointSlice, old: &EndpointSlice) -> Vec<FieldError> {
        if new.address_type != old.address_type {
            return vec![FieldError::invalid(
                "addressType",
                &new.address_type,
                "field is immutable",
            )];
        }
        vec![]
    }
}
