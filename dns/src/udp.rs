//! DNS over UDP: one socket per core on the same port (`SO_REUSEPORT`, the kernel spreads
//! clients across them), each read by its own loop that drains what is queued (up to 32
//! datagrams), answers each in place and sends the answers with one `sendmmsg`. TCP
//! stays with hickory-server's listener.
//!
//! Why not hickory-server's UDP loop: it spawns a task per datagram and hands every answer
//! back through a channel to the one task that owns the socket, so a single socket's
//! receive and send calls run on one thread and each query pays a spawn and two wake-ups.
//! Here a query the zone answers (no upstream involved) completes within the loop's own
//! poll; only one that must wait (forwarding, an ExternalName chase) is moved to a task
//! of its own, so a slow upstream never holds up cluster names.
//!
//! Contract, as hickory-server's: datagrams shorter than a DNS header and responses
//! (QR set) get nothing; a header followed by bytes that do not parse gets FORMERR; a
//! source that cannot be answered (port 0, an unspecified or broadcast address) is
//! ignored; every other datagram gets exactly one response from the handler.

use std::io::{self, IoSlice};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::net::NetError;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use rustix::net::addr::SocketAddrArg;
use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
use tokio::net::UdpSocket;

use crate::handler::Handler;

/// The largest datagram read; a query longer than this is cut and answers FORMERR.
const MAX_DATAGRAM: usize = 4096;

/// Binds `count` (at least one) UDP sockets to `addr` with `SO_REUSEPORT`. With port 0
/// the first socket's port is taken by the others.
pub fn bind(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let mut sockets = Vec::with_capacity(count.max(1));
    let mut at = addr;
    for _ in 0..count.max(1) {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(at),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        socket.set_reuse_port(true)?;
        if at.is_ipv6() {
            socket.set_only_v6(false)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&at.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        at = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// Serves `socket` until it fails or the task is dropped.
pub async fn serve(socket: UdpSocket, handler: Arc<Handler>) -> io::Result<()> {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut batch: Vec<(Vec<u8>, SocketAddr)> = Vec::with_capacity(BATCH);
    loop {
        socket.readable().await?;
        // Drain what is queued (up to a batch), answering each in turn.
        for _ in 0..BATCH {
            let (len, src) = match socket.try_recv_from(&mut buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                // An ICMP error from an earlier send (a client that went away) surfaces
                // on the next receive on Linux; it says nothing about this socket.
                Err(e) if transient(&e) => continue,
                Err(e) => return Err(e),
            };
            if !answerable(src) {
                continue;
            }
            if let Some(datagram) = buf.get(..len) {
                if let Some(bytes) = answer(datagram, src, &socket, &handler).await {
                    batch.push((bytes, src));
                }
            }
        }
        send_batch(&socket, &mut batch).await;
    }
}

/// At most this many datagrams are read before the answers go out together.
const BATCH: usize = 32;

/// Runs one datagram through the handler. An answer ready within the first poll is
/// returned, for the batch; a query that has to wait is moved to a task that sends its
/// own answer.
async fn answer(
    datagram: &[u8],
    src: SocketAddr,
    socket: &Arc<UdpSocket>,
    handler: &Arc<Handler>,
) -> Option<Vec<u8>> {
    let slot = Arc::new(Mutex::new(Slot::Open(None)));
    let mut reply = Reply {
        socket: socket.clone(),
        dst: src,
        max_size: 512,
        id: 0,
        slot: slot.clone(),
    };
    let request = match Request::from_bytes(datagram.to_vec(), src, Protocol::Udp) {
        Ok(r) => r,
        Err(_) => {
            formerr(datagram, reply).await;
            return take(&slot);
        }
    };
    if request.metadata.message_type == MessageType::Response {
        return None;
    }
    // The handler echoes EDNS with this size (RFC 1035's 512 without EDNS).
    reply.max_size = request
        .edns
        .as_ref()
        .map_or(512, |e| e.max_payload().max(512));
    reply.id = request.metadata.id;
    let h = handler.clone();
    let mut fut = Box::pin(async move {
        h.handle_request::<_, TokioTime>(&request, reply).await;
    });
    let pending = futures::poll!(fut.as_mut()).is_pending();
    let ready = take(&slot);
    if pending {
        tokio::spawn(fut);
    }
    ready
}

/// Where a [`Reply`] puts its bytes: into the batch while the loop still holds the
/// query (its first poll), else straight onto the socket.
enum Slot {
    Open(Option<Vec<u8>>),
    Closed,
}

/// Closes the slot, returning the answer written while it was open.
fn take(slot: &Mutex<Slot>) -> Option<Vec<u8>> {
    let mut s = slot.lock().unwrap_or_else(|e| e.into_inner());
    match std::mem::replace(&mut *s, Slot::Closed) {
        Slot::Open(bytes) => bytes,
        Slot::Closed => None,
    }
}

/// Sends the batch with `sendmmsg` (one system call for all of it), falling back to one
/// `send_to` each for what the kernel did not take at once; empties it.
async fn send_batch(socket: &UdpSocket, batch: &mut Vec<(Vec<u8>, SocketAddr)>) {
    if batch.is_empty() {
        return;
    }
    let mut sent = 0;
    if batch.len() > 1 {
        let addrs: Vec<SocketAddrAny> = batch.iter().map(|(_, a)| a.as_any()).collect();
        let iovs: Vec<[IoSlice<'_>; 1]> = batch.iter().map(|(b, _)| [IoSlice::new(b)]).collect();
        let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = batch
            .iter()
            .map(|_| SendAncillaryBuffer::default())
            .collect();
        let mut msgs: Vec<MMsgHdr<'_>> = addrs
            .iter()
            .zip(iovs.iter())
            .zip(controls.iter_mut())
            .map(|((a, iov), c)| MMsgHdr::new_with_addr(a, iov, c))
            .collect();
        if let Ok(n) = socket.try_io(tokio::io::Interest::WRITABLE, || {
            sendmmsg(socket, &mut msgs, SendFlags::empty()).map_err(io::Error::from)
        }) {
            sent = n;
        }
    }
    for (bytes, dst) in batch.iter().skip(sent) {
        if let Err(e) = socket.send_to(bytes, *dst).await {
            tracing::debug!(error = %e, %dst, "sending an answer failed");
        }
    }
    batch.clear();
}

fn transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::HostUnreachable
    )
}

/// Whether a response to `src` could go anywhere (hickory-server's check).
fn answerable(src: SocketAddr) -> bool {
    if src.port() == 0 {
        return false;
    }
    match src.ip() {
        IpAddr::V4(ip) => !ip.is_unspecified() && !ip.is_broadcast(),
        IpAddr::V6(ip) => !ip.is_unspecified(),
    }
}

/// FORMERR for a datagram whose header parses and whose rest does not.
async fn formerr(datagram: &[u8], mut reply: Reply) {
    let mut decoder = BinDecoder::new(datagram);
    let Ok(header) = Header::read(&mut decoder) else {
        return;
    };
    if header.metadata.message_type == MessageType::Response {
        return;
    }
    let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
        return;
    };
    let response = MessageResponseBuilder::new(&queries, None);
    let _ = reply
        .send_response(response.error_msg(&header.metadata, ResponseCode::FormErr))
        .await;
}

/// Sends one response to the client from the socket the query came in on (through the
/// batch while its slot is open), encoded to at most `max_size` bytes (past it the
/// encoder drops records and sets TC).
#[derive(Clone)]
struct Reply {
    socket: Arc<UdpSocket>,
    dst: SocketAddr,
    max_size: u16,
    /// The query's id, for the bare SERVFAIL sent when an answer cannot be encoded.
    id: u16,
    slot: Arc<Mutex<Slot>>,
}

#[async_trait::async_trait]
impl ResponseHandler for Reply {
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
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(self.max_size);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(e) => {
                // As hickory-server: an answer that cannot be encoded at all (a
                // question too long to echo) becomes a bare SERVFAIL.
                tracing::debug!(error = %e, "encoding a response failed; SERVFAIL");
                bytes.clear();
                let mut encoder = BinEncoder::new(&mut bytes);
                let mut metadata = Metadata::new(self.id, MessageType::Response, OpCode::Query);
                metadata.response_code = ResponseCode::ServFail;
                let header = Header {
                    metadata,
                    counts: HeaderCounts::default(),
                };
                header.emit(&mut encoder)?;
                ResponseInfo::from(header)
            }
        };
        {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Slot::Open(out) = &mut *slot {
                *out = Some(bytes);
                return Ok(info);
            }
        }
        self.socket.send_to(&bytes, self.dst).await?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unanswerable_sources() {
        assert!(!answerable("0.0.0.0:53".parse().unwrap()));
        assert!(!answerable("255.255.255.255:53".parse().unwrap()));
        assert!(!answerable("10.0.0.1:0".parse().unwrap()));
        assert!(!answerable("[::]:53".parse().unwrap()));
        assert!(answerable("10.0.0.1:40000".parse().unwrap()));
    }

    #[tokio::test]
    async fn sockets_share_one_port() {
        let s = bind("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        assert_eq!(s.len(), 3);
        let port = s[0].local_addr().unwrap().port();
        assert!(s.iter().all(|x| x.local_addr().unwrap().port() == port));
        assert_eq!(bind("127.0.0.1:0".parse().unwrap(), 0).unwrap().len(), 1);
    }
}
