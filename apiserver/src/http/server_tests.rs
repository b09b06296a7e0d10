//! The accept loop's limits, on a local listener with a trivial handler: clients that
//! never finish a handshake or never send headers are closed in time, and connections
//! beyond the cap are closed at once while those already open are served.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::limits::ConnectionLimits;
use super::{full, serve_with};

struct Server {
    addr: std::net::SocketAddr,
    client: tokio_rustls::TlsConnector,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn server(limits: ConnectionLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let material =
        crate::tls::self_signed(dir.path(), &["127.0.0.1".into(), "localhost".into()]).unwrap();
    let tls = crate::tls::server_config(&material).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(serve_with(
        listener,
        tls,
        limits,
        stopped,
        |_req, _peer| async { http::Response::new(full("ok")) },
    ));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(material.ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Server {
        addr,
        client: tokio_rustls::TlsConnector::from(Arc::new(cfg)),
        _stop: stop,
        _dir: dir,
    }
}

type Tls = tokio_rustls::client::TlsStream<TcpStream>;

impl Server {
    async fn tls(&self) -> std::io::Result<Tls> {
        let tcp = TcpStream::connect(self.addr).await?;
        let name = ServerName::try_from("localhost").unwrap();
        self.client.connect(name, tcp).await
    }
}

/// One HTTP/1.1 request and its whole answer (`ok`).
async fn get(c: &mut Tls) -> std::io::Result<String> {
    c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.ends_with(b"\r\n\r\nok") {
        let n = c.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// How long until the server closes the connection (EOF or an error), at most `within`.
async fn closed_after(c: &mut (impl AsyncRead + Unpin), within: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let r = tokio::time::timeout(within, async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    r.ok().map(|()| started.elapsed())
}

const SHORT: Duration = Duration::from_millis(400);

#[tokio::test]
async fn clients_that_never_send_headers_are_closed_after_the_timeout() {
    let s = server(ConnectionLimits {
        max_connections: 10,
        handshake_timeout: SHORT,
        header_read_timeout: SHORT,
    })
    .await;
    // TLS done, then silence: closed after the header timeout, not before.
    let mut silent = s.tls().await.unwrap();
    let t = closed_after(&mut silent, Duration::from_secs(10))
        .await
        .expect("a silent TLS client is closed");
    assert!(t >= SHORT - Duration::from_millis(50), "closed after {t:?}");
    // Half a request's headers, then silence.
    let mut slow = s.tls().await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .unwrap();
    assert!(closed_after(&mut slow, Duration::from_secs(10))
        .await
        .is_some());
    // A second request on a kept-alive connection has its own header timeout.
    let mut kept = s.tls().await.unwrap();
    assert!(get(&mut kept).await.unwrap().starts_with("HTTP/1.1 200"));
    kept.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    assert!(closed_after(&mut kept, Duration::from_secs(10))
        .await
        .is_some());
    // TCP without a TLS handshake: closed after the handshake timeout.
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    let t = closed_after(&mut tcp, Duration::from_secs(10))
        .await
        .expect("a client that never starts TLS is closed");
    assert!(t >= SHORT - Duration::from_millis(50), "closed after {t:?}");
    // A client that sends its request in time is served.
    let mut ok = s.tls().await.unwrap();
    assert!(get(&mut ok).await.unwrap().starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_while_open_ones_are_served() {
    let s = server(ConnectionLimits {
        max_connections: 2,
        handshake_timeout: Duration::from_secs(10),
        header_read_timeout: Duration::from_secs(10),
    })
    .await;
    let mut a = s.tls().await.unwrap();
    let mut b = s.tls().await.unwrap();
    assert!(get(&mut a).await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(get(&mut b).await.unwrap().starts_with("HTTP/1.1 200"));
    // A third is closed as soon as it is accepted: its handshake fails at once.
    let started = Instant::now();
    assert!(s.tls().await.is_err(), "a third connection is refused");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The open ones are still served.
    assert!(get(&mut a).await.unwrap().starts_with("HTTP/1.1 200"));
    assert!(get(&mut b).await.unwrap().starts_with("HTTP/1.1 200"));
    // A closed one frees its slot.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut c) = s.tls().await {
            if get(&mut c).await.is_ok() {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the slot of a closed connection is freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(get(&mut b).await.unwrap().starts_with("HTTP/1.1 200"));
}
