//! The request handler hickory-server calls for every parsed query: the cluster zone
//! answers its names, the forwarder the rest.
//!
//! Contract: every request gets exactly one response and nothing panics, whatever the
//! bytes: more or fewer than one question is FORMERR, an opcode other than QUERY is
//! NOTIMP, a class other than IN is REFUSED, an EDNS version above 0 is BADVERS. Cluster
//! names are SERVFAIL until the first list of Services and EndpointSlices is in (CoreDNS
//! while not synced), then answered authoritatively (AA, SOA in the authority section of
//! NXDOMAIN and NODATA). Upstream failures are SERVFAIL. EDNS0 is echoed with the client's
//! payload size, which (or 512 without EDNS) bounds a UDP answer: past it hickory's
//! encoder drops records and sets TC.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, Record, RecordType};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::sync::watch;
use tracing::Instrument;

use crate::forward::Forwarder;
use crate::metrics::{Metrics, Proto, RequestLabels};
use crate::zone::{Lookup, Zone};

/// The latest zone; `None` until the first lists are in.
pub type ZoneRx = watch::Receiver<Option<Arc<Zone>>>;

#[derive(Clone)]
pub struct Handler {
    apex: Name,
    zone: ZoneRx,
    forwarder: Arc<Forwarder>,
    metrics: Arc<Metrics>,
}

/// The sections and flags of one response.
struct Reply {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

impl Reply {
    fn error(rcode: ResponseCode) -> Self {
        Reply {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
        }
    }
}

impl Handler {
    pub fn new(apex: Name, zone: ZoneRx, forwarder: Arc<Forwarder>, metrics: Arc<Metrics>) -> Self {
        Handler {
            apex,
            zone,
            forwarder,
            metrics,
        }
    }

    /// The reply to one well-formed IN question.
    async fn answer(&self, name: &Name, qtype: RecordType) -> Reply {
        let zone = self.zone.borrow().clone();
        let in_zone = self.apex.zone_of(name);
        let lookup = match &zone {
            Some(z) => z.lookup(name, qtype),
            None if in_zone => return Reply::error(ResponseCode::ServFail),
            None => Lookup::NotOurs,
        };
        let soa =
            || -> Vec<Record> { zone.as_ref().map(|z| z.soa().clone()).into_iter().collect() };
        match lookup {
            Lookup::Answer {
                mut answers,
                additionals,
                chase,
            } => {
                if let Some(target) = chase.filter(|_| qtype != RecordType::CNAME) {
                    // An ExternalName's target, resolved as CoreDNS does for A/AAAA.
                    if let Ok(up) = self.forwarder.resolve(&target, qtype).await {
                        answers.extend(up.answers);
                    }
                }
                Reply {
                    rcode: ResponseCode::NoError,
                    authoritative: true,
                    answers,
                    authorities: Vec::new(),
                    additionals,
                }
            }
            Lookup::NoData => Reply {
                rcode: ResponseCode::NoError,
                authoritative: true,
                answers: Vec::new(),
                authorities: soa(),
                additionals: Vec::new(),
            },
            Lookup::NxDomain => Reply {
                rcode: ResponseCode::NXDomain,
                authoritative: true,
                answers: Vec::new(),
                authorities: soa(),
                additionals: Vec::new(),
            },
            Lookup::NotOurs => match self.forwarder.resolve(name, qtype).await {
                Ok(up) => Reply {
                    rcode: up.rcode,
                    authoritative: false,
                    answers: up.answers,
                    authorities: up.authorities,
                    additionals: up.additionals,
                },
                Err(e) => {
                    tracing::debug!(error = %e, "forwarding failed");
                    Reply::error(ResponseCode::ServFail)
                }
            },
        }
    }

    /// Validates the request and computes its reply, counting it.
    async fn reply(&self, request: &Request) -> Reply {
        if request.metadata.op_code != OpCode::Query {
            return Reply::error(ResponseCode::NotImp);
        }
        let Ok(info) = request.request_info() else {
            return Reply::error(ResponseCode::FormErr);
        };
        let query = info.query;
        let name: Name = query.name().into();
        let qtype = query.query_type();
        let in_zone = self.apex.zone_of(&name);
        self.metrics.request(RequestLabels {
            in_zone,
            proto: match request.protocol() {
                Protocol::Udp => Proto::Udp,
                Protocol::Tcp => Proto::Tcp,
                _ => Proto::Other,
            },
            ipv6: request.src().is_ipv6(),
            qtype,
        });
        if query.query_class() != DNSClass::IN {
            return Reply::error(ResponseCode::Refused);
        }
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR | RecordType::OPT) {
            return Reply::error(ResponseCode::Refused);
        }
        let span = tracing::debug_span!("query", %name, %qtype, in_zone);
        self.answer(&name, qtype).instrument(span).await
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let start = Instant::now();
        let mut resp_edns = None;
        let mut reply = None;
        if let Some(req) = request.edns.as_ref() {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e.set_version(0);
            if req.version() > 0 {
                reply = Some(Reply::error(ResponseCode::BADVERS));
            }
            resp_edns = Some(e);
        }
        let reply = match reply {
            Some(r) => r,
            None => self.reply(request).await,
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        meta.authoritative = reply.authoritative;
        meta.response_code = reply.rcode;
        let mut builder = MessageResponseBuilder::new(&request.queries, None);
        if let Some(e) = resp_edns.as_ref() {
            builder.edns(e);
        }
        let response = builder.build(
            meta,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        let info = match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, src = %request.src(), "sending the response failed");
                let mut m = Metadata::response_from_request(&request.metadata);
                m.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: m,
                    counts: HeaderCounts::default(),
                })
            }
        };
        self.metrics
            .response(info.response_code, start.elapsed().as_secs_f64());
        info
    }
}
