//! The handler inside hickory-server on real sockets, with the zone fed from the pure index
//! (no apiserver): wire behaviour (AA, SOA on negatives, EDNS0 echo, truncation on UDP,
//! TCP), forwarding to an upstream (itself a second server), SERVFAIL before sync and on
//! upstream failure, and a fuzz of the request path.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dns::testing::{bind_udp, serve_udp, Forwarder, Handler, Metrics, Params, Zone};
use dns::PodMode;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use rand::{Rng, RngCore, SeedableRng};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;

fn svc(ns: &str, name: &str, ip: &str) -> Arc<Service> {
    Arc::new(Service {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A headless service `big` with `n` ready endpoints.
fn big(n: u8) -> (Arc<Service>, Arc<EndpointSlice>) {
    let mut s = (*svc("default", "big", "None")).clone();
    s.spec.as_mut().unwrap().ports = None;
    let slice = EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some("big-1".into()),
            labels: Some([("kubernetes.io/service-name".to_string(), "big".to_string())].into()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: (0..n)
            .map(|i| Endpoint {
                addresses: vec![format!("10.2.0.{i}")],
                ..Default::default()
            })
            .collect(),
        ports: None,
    };
    (Arc::new(s), Arc::new(slice))
}

fn zone(apex: &str) -> Zone {
    let (b, bs) = big(100);
    Zone::build(
        &Params {
            apex: Name::from_ascii(apex).unwrap(),
            ttl: 30,
            pods: PodMode::Insecure,
            serial: 1,
            dns_ip: None,
        },
        &[svc("default", "web", "10.96.0.20"), b],
        &[bs],
    )
}

struct Running {
    addr: SocketAddr,
    zone_tx: watch::Sender<Option<Arc<Zone>>>,
    metrics: Arc<Metrics>,
}

fn handler(
    apex: &str,
    upstreams: &[SocketAddr],
) -> (Handler, watch::Sender<Option<Arc<Zone>>>, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new("dns://:0".into(), apex.into()));
    let fwd = Arc::new(Forwarder::new(upstreams, 100, 30, metrics.clone()).unwrap());
    let (tx, rx) = watch::channel(None);
    let h = Handler::new(Name::from_ascii(apex).unwrap(), rx, fwd, metrics.clone());
    (h, tx, metrics)
}

/// A server for `apex` on 127.0.0.1 (two UDP sockets and TCP on one port), zone not yet
/// published.
async fn start(apex: &str, upstreams: &[SocketAddr]) -> Running {
    let (h, zone_tx, metrics) = handler(apex, upstreams);
    let sockets = bind_udp("127.0.0.1:0".parse().unwrap(), 2).unwrap();
    let addr = sockets[0].local_addr().unwrap();
    let tcp = TcpListener::bind(addr).await.unwrap();
    let mut server = hickory_server::Server::new(h.clone());
    server.register_listener(tcp, Duration::from_secs(5), 32);
    tokio::spawn(async move {
        let _ = server.block_until_done().await;
    });
    let h = Arc::new(h);
    for socket in sockets {
        tokio::spawn(serve_udp(socket, h.clone()));
    }
    Running {
        addr,
        zone_tx,
        metrics,
    }
}

fn query(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    if let Some(size) = edns {
        let mut e = Edns::new();
        e.set_max_payload(size);
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

async fn udp(addr: SocketAddr, name: &str, t: RecordType, edns: Option<u16>) -> (Message, usize) {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.send_to(&query(name, t, edns), addr).await.unwrap();
    let mut buf = vec![0u8; 65535];
    let n = tokio::time::timeout(Duration::from_secs(10), s.recv(&mut buf))
        .await
        .expect("a response within 10 s")
        .unwrap();
    (Message::from_vec(&buf[..n]).unwrap(), n)
}

async fn tcp(addr: SocketAddr, name: &str, t: RecordType) -> Message {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let q = query(name, t, None);
    s.write_all(&u16::try_from(q.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    s.write_all(&q).await.unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).await.unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn answers_the_zone_on_the_wire() {
    let s = start("cluster.local.", &[]).await;
    // Not synced: SERVFAIL for cluster names.
    let (m, _) = udp(
        s.addr,
        "web.default.svc.cluster.local.",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    s.zone_tx
        .send_replace(Some(Arc::new(zone("cluster.local."))));

    let (m, _) = udp(
        s.addr,
        "web.default.svc.cluster.local.",
        RecordType::A,
        Some(1232),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(addrs(&m), vec!["10.96.0.20"]);
    assert_eq!(m.answers[0].ttl, 30);
    let edns = m.edns.as_ref().expect("EDNS0 echoed");
    assert_eq!(edns.max_payload(), 1232);

    let (m, _) = udp(
        s.addr,
        "nope.default.svc.cluster.local.",
        RecordType::A,
        None,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(matches!(&m.authorities[0].data, RData::SOA(_)));
    assert!(m.edns.is_none(), "no OPT when the query had none");

    let (m, _) = udp(
        s.addr,
        "web.default.svc.cluster.local.",
        RecordType::AAAA,
        None,
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert!(matches!(&m.authorities[0].data, RData::SOA(_)));

    let (m, _) = udp(
        s.addr,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
        None,
    )
    .await;
    assert_eq!(m.answers.len(), 1);
    assert_eq!(m.additionals.len(), 1);

    // No forwarder configured: names outside the zone are SERVFAIL.
    let (m, _) = udp(s.addr, "example.com.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
    assert!(s.metrics.requests_total() >= 6);
}

#[tokio::test]
async fn truncates_on_udp_and_not_on_tcp() {
    let s = start("cluster.local.", &[]).await;
    s.zone_tx
        .send_replace(Some(Arc::new(zone("cluster.local."))));
    let name = "big.default.svc.cluster.local.";
    let (m, n) = udp(s.addr, name, RecordType::A, None).await;
    assert!(m.metadata.truncation, "100 A records exceed 512 bytes");
    assert!(n <= 512, "{n} bytes");
    let (m, n) = udp(s.addr, name, RecordType::A, Some(4096)).await;
    assert!(!m.metadata.truncation, "fits the advertised 4096");
    assert_eq!(m.answers.len(), 100);
    assert!(n > 512);
    let m = tcp(s.addr, name, RecordType::A).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 100);
}

#[tokio::test]
async fn forwards_to_upstreams_and_caches() {
    let up = start("example.", &[]).await;
    up.zone_tx.send_replace(Some(Arc::new(zone("example."))));
    let s = start("cluster.local.", &[up.addr]).await;
    s.zone_tx
        .send_replace(Some(Arc::new(zone("cluster.local."))));

    let (m, _) = udp(s.addr, "web.default.svc.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(!m.metadata.authoritative, "forwarded answers are not ours");
    assert!(m.metadata.recursion_available);
    assert_eq!(addrs(&m), vec!["10.96.0.20"]);
    let (m, _) = udp(s.addr, "web.default.svc.example.", RecordType::A, None).await;
    assert_eq!(addrs(&m), vec!["10.96.0.20"]);
    use std::sync::atomic::Ordering;
    assert_eq!(s.metrics.cache_hits.load(Ordering::Relaxed), 1);
    assert_eq!(s.metrics.forward_requests.load(Ordering::Relaxed), 1);

    let (m, _) = udp(s.addr, "nope.default.svc.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(matches!(
        m.authorities.first().map(|r| &r.data),
        Some(RData::SOA(_))
    ));

    // An upstream that does not answer: SERVFAIL.
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let s2 = start("cluster.local.", &[dead.local_addr().unwrap()]).await;
    s2.zone_tx
        .send_replace(Some(Arc::new(zone("cluster.local."))));
    let (m, _) = udp(s2.addr, "web.default.svc.example.", RecordType::A, None).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

#[tokio::test]
async fn udp_loop_rejects_garbage_and_never_waits_on_upstreams() {
    // An upstream that never answers: forwarded queries wait out the forwarder's timeout.
    let dead = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let s = start("cluster.local.", &[dead.local_addr().unwrap()]).await;
    s.zone_tx
        .send_replace(Some(Arc::new(zone("cluster.local."))));
    let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    client.connect(s.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];

    // Shorter than a header, and a response (QR set): no answer at all.
    client.send(&[1, 2, 3]).await.unwrap();
    let response = Message::new(7, MessageType::Response, OpCode::Query);
    client.send(&response.to_vec().unwrap()).await.unwrap();
    // A header announcing a question that is not there: FORMERR with the query's id.
    let mut bad = query("web.default.svc.cluster.local.", RecordType::A, None);
    bad[0] = 0x42;
    bad[1] = 0x43;
    bad.truncate(14);
    client.send(&bad).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), client.recv(&mut buf))
        .await
        .expect("FORMERR sent")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        m.metadata.id, 0x4243,
        "the first reply is for the malformed query"
    );
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);

    // A forwarded query stuck on its upstream does not hold up a cluster name asked after it.
    client
        .send(&query("slow.example.", RecordType::A, None))
        .await
        .unwrap();
    client
        .send(&query(
            "web.default.svc.cluster.local.",
            RecordType::A,
            None,
        ))
        .await
        .unwrap();
    let n = tokio::time::timeout(Duration::from_secs(3), client.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(
        addrs(&m),
        vec!["10.96.0.20"],
        "the cluster name is answered first"
    );
}

/// Records what the handler sends, encoded as the UDP path would.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Option<Vec<u8>>>>>);

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let mut buf = Vec::new();
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(512);
        // An answer that cannot be encoded at all (a FORMERR echoing a huge question) is
        // an error here; hickory's own handle then sends a bare SERVFAIL.
        match response.destructive_emit(&mut enc) {
            Ok(info) => {
                self.0.lock().unwrap().push(Some(buf));
                Ok(info)
            }
            Err(e) => {
                self.0.lock().unwrap().push(None);
                Err(e.into())
            }
        }
    }
}

#[tokio::test]
async fn random_bytes_never_panic_the_request_path() {
    let (h, tx, _) = handler("cluster.local.", &[]);
    tx.send_replace(Some(Arc::new(zone("cluster.local."))));
    let src: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let valid = query("web.default.svc.cluster.local.", RecordType::A, Some(1232));
    let (mut parsed, mut answered) = (0, 0);
    for i in 0..20_000 {
        let bytes = if i % 2 == 0 {
            let len = rng.random_range(0..600);
            let mut b = vec![0u8; len];
            rng.fill_bytes(&mut b);
            b
        } else {
            // A valid query with a few bytes flipped, truncated or extended: deeper paths.
            let mut b = valid.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = rng.random_range(0..b.len());
                b[at] = rng.random();
            }
            if rng.random_bool(0.2) {
                b.truncate(rng.random_range(0..b.len()));
            }
            b
        };
        let protocol = if i % 3 == 0 {
            Protocol::Tcp
        } else {
            Protocol::Udp
        };
        let Ok(req) = Request::from_bytes(bytes, src, protocol) else {
            continue;
        };
        parsed += 1;
        let cap = Capture::default();
        h.handle_request::<_, TokioTime>(&req, cap.clone()).await;
        let sent = cap.0.lock().unwrap();
        assert_eq!(sent.len(), 1, "exactly one response per request");
        if let Some(bytes) = &sent[0] {
            answered += 1;
            assert!(Message::from_vec(bytes).is_ok(), "responses parse");
        }
    }
    assert!(
        parsed > 1000,
        "the mutations reached the handler ({parsed})"
    );
    assert!(
        answered * 10 >= parsed * 9,
        "{answered} of {parsed} encodable"
    );
    // Still answers a valid query.
    let req = Request::from_bytes(valid, src, Protocol::Udp).unwrap();
    let cap = Capture::default();
    h.handle_request::<_, TokioTime>(&req, cap.clone()).await;
    let sent = cap.0.lock().unwrap()[0].clone().expect("encodable");
    let m = Message::from_vec(&sent).unwrap();
    assert_eq!(addrs(&m), vec!["10.96.0.20"]);
}
