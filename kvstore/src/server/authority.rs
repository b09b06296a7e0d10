//! Accepting the `:authority` etcd's Go clients send, which the Rust HTTP/2 server refuses.
//!
//! etcdctl 3.4 dials some endpoints (`endpoint status`, `endpoint hashkv`) through the
//! gRPC target `passthrough:///http://127.0.0.1:2379`, so its requests carry the
//! `:authority` `http://127.0.0.1:2379`. etcd's Go server ignores the authority; `h2`
//! checks it and resets the stream with PROTOCOL_ERROR, so those commands failed against
//! the kvstore with any `http://` endpoint, the form users write everywhere.
//!
//! Contract: a client connection whose first request has a valid `:authority` (or none)
//! reaches the gRPC server byte for byte as sent, and after that first request costs
//! nothing (reads go straight to the socket). A connection whose first request names a
//! URL instead of an authority is transcoded for its whole life: every header block the
//! client sends is decoded with the client's HPACK context, its `:authority` replaced by
//! the URL's host and port (left out when even that is not valid), and re-encoded with a
//! context of our own that the server's decoder follows; every other frame passes
//! unchanged. Anything this layer cannot parse on a plain connection is passed through so
//! the server reports the protocol error itself; on a transcoded one it ends the
//! connection. Header blocks are bounded ([`MAX_BLOCK`]) before and after decoding.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const PREFACE_LEN: usize = 24;
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// The server's SETTINGS_MAX_FRAME_SIZE (HTTP/2's default, which tonic keeps).
const MAX_FRAME: usize = 16_384;
/// The most a header block may take, encoded (all its frames) or decoded.
pub const MAX_BLOCK: usize = 1 << 20;
/// HPACK's default dynamic table size, the one the server announces.
const TABLE_SIZE: usize = 4_096;

/// A client connection that tolerates URL authorities (see the module doc).
pub struct AuthorityTolerant<S> {
    io: S,
    rx: Rx,
}

impl<S> AuthorityTolerant<S> {
    pub fn new(io: S) -> Self {
        AuthorityTolerant {
            io,
            rx: Rx::default(),
        }
    }
}

/// The client-to-server half: bytes read from the socket (`raw`) become bytes for the
/// server (`ready`).
#[derive(Default)]
struct Rx {
    raw: BytesMut,
    ready: BytesMut,
    mode: Mode,
}

#[derive(Default)]
enum Mode {
    /// Before the connection preface has been read.
    #[default]
    Preface,
    /// Until the first header block: frames pass one by one.
    Sniff,
    /// Everything passes unchanged.
    Pass,
    /// Every header block is rewritten.
    Transcode(Box<Codec>),
}

struct Codec {
    client: Decoder<'static>,
    server: Encoder<'static>,
}

fn invalid(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// What `:authority` should become: `None` to keep it, `Some(None)` to drop it.
fn fixed_authority(value: &[u8]) -> Option<Option<Vec<u8>>> {
    let valid =
        |v: &[u8]| !v.is_empty() && tonic::codegen::http::uri::Authority::try_from(v).is_ok();
    if valid(value) {
        return None;
    }
    let rest = value
        .windows(3)
        .position(|w| w == b"://")
        .map_or(value, |i| &value[i + 3..]);
    let host = rest.split(|b| *b == b'/').next().unwrap_or_default();
    Some(valid(host).then(|| host.to_vec()))
}

/// One header block at the front of `raw`: its frames' total length, the HEADERS frame's
/// flags and priority bytes, and the concatenated fragment. `Ok(None)`: not all here yet.
struct Block {
    consumed: usize,
    flags: u8,
    stream: u32,
    priority: Option<[u8; 5]>,
    fragment: Vec<u8>,
}

fn frame_header(b: &[u8]) -> (usize, u8, u8, u32) {
    let len = (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]);
    let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff;
    (len, b[3], b[4], stream)
}

fn take_block(raw: &[u8]) -> Result<Option<Block>, std::io::Error> {
    let (len, _, flags, stream) = frame_header(raw);
    if FRAME_HEADER + len > raw.len() {
        return Ok(None);
    }
    let payload = &raw[FRAME_HEADER..FRAME_HEADER + len];
    let mut body = payload;
    let mut pad = 0usize;
    if flags & PADDED != 0 {
        let (&p, rest) = body
            .split_first()
            .ok_or_else(|| invalid("HEADERS without pad length"))?;
        pad = usize::from(p);
        body = rest;
    }
    let mut priority = None;
    if flags & PRIORITY != 0 {
        if body.len() < 5 {
            return Err(invalid("HEADERS priority truncated"));
        }
        let mut p = [0u8; 5];
        p.copy_from_slice(&body[..5]);
        priority = Some(p);
        body = &body[5..];
    }
    if pad > body.len() {
        return Err(invalid("HEADERS padding longer than the frame"));
    }
    let mut fragment = body[..body.len() - pad].to_vec();
    let mut at = FRAME_HEADER + len;
    let mut last_flags = flags;
    while last_flags & END_HEADERS == 0 {
        if raw.len() < at + FRAME_HEADER {
            return Ok(None);
        }
        let (clen, typ, cflags, cstream) = frame_header(&raw[at..]);
        if typ != CONTINUATION || cstream != stream {
            return Err(invalid("a header block interrupted by another frame"));
        }
        if raw.len() < at + FRAME_HEADER + clen {
            return Ok(None);
        }
        fragment.extend_from_slice(&raw[at + FRAME_HEADER..at + FRAME_HEADER + clen]);
        at += FRAME_HEADER + clen;
        last_flags = cflags;
    }
    Ok(Some(Block {
        consumed: at,
        flags,
        stream,
        priority,
        fragment,
    }))
}

/// The decoded header list of `fragment`, bounded in size.
fn decode(
    dec: &mut Decoder<'static>,
    fragment: &[u8],
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, std::io::Error> {
    let mut out = Vec::new();
    let mut size = 0usize;
    let mut over = false;
    dec.decode_with_cb(fragment, |n: Cow<[u8]>, v: Cow<[u8]>| {
        size = size.saturating_add(n.len() + v.len() + 32);
        if size > MAX_BLOCK {
            over = true;
        } else {
            out.push((n.into_owned(), v.into_owned()));
        }
    })
    .map_err(|e| invalid(format!("HPACK: {e:?}")))?;
    if over {
        return Err(invalid("header list too large"));
    }
    Ok(out)
}

/// Whether the decoded list needs its authority fixed.
fn needs_fix(headers: &[(Vec<u8>, Vec<u8>)]) -> bool {
    headers
        .iter()
        .any(|(n, v)| n == b":authority" && fixed_authority(v).is_some())
}

/// Re-encodes `headers` with a fixed authority as HEADERS (+ CONTINUATION) frames.
fn encode(
    enc: &mut Encoder<'static>,
    b: &Block,
    headers: &[(Vec<u8>, Vec<u8>)],
    out: &mut BytesMut,
) {
    let mut kept: Vec<(&[u8], Cow<[u8]>)> = Vec::with_capacity(headers.len());
    for (n, v) in headers {
        if n == b":authority" {
            match fixed_authority(v) {
                None => kept.push((n, Cow::Borrowed(v))),
                Some(Some(a)) => kept.push((n, Cow::Owned(a))),
                Some(None) => {}
            }
        } else {
            kept.push((n, Cow::Borrowed(v)));
        }
    }
    let block = enc.encode(kept.iter().map(|(n, v)| (*n, v.as_ref())));
    let prio_len = if b.priority.is_some() { 5 } else { 0 };
    let mut chunks = Vec::new();
    let first = block.len().min(MAX_FRAME - prio_len);
    chunks.push(&block[..first]);
    let mut rest = &block[first..];
    while !rest.is_empty() {
        let n = rest.len().min(MAX_FRAME);
        chunks.push(&rest[..n]);
        rest = &rest[n..];
    }
    let count = chunks.len();
    for (i, c) in chunks.into_iter().enumerate() {
        let (typ, mut flags, extra) = if i == 0 {
            let mut f = b.flags & END_STREAM;
            if b.priority.is_some() {
                f |= PRIORITY;
            }
            (HEADERS, f, prio_len)
        } else {
            (CONTINUATION, 0, 0)
        };
        if i + 1 == count {
            flags |= END_HEADERS;
        }
        let len = c.len() + extra;
        out.put_slice(&[(len >> 16) as u8, (len >> 8) as u8, len as u8, typ, flags]);
        out.put_u32(b.stream);
        if i == 0 {
            if let Some(p) = b.priority {
                out.put_slice(&p);
            }
        }
        out.put_slice(c);
    }
}

impl Rx {
    /// Moves what can be decided from `raw` to `ready`.
    fn process(&mut self) -> Result<(), std::io::Error> {
        loop {
            match &mut self.mode {
                Mode::Preface => {
                    if self.raw.len() < PREFACE_LEN {
                        return Ok(());
                    }
                    self.ready.unsplit(self.raw.split_to(PREFACE_LEN));
                    self.mode = Mode::Sniff;
                }
                Mode::Pass => {
                    let all = self.raw.split();
                    self.ready.unsplit(all);
                    return Ok(());
                }
                Mode::Sniff | Mode::Transcode(_) => {
                    if self.raw.len() < FRAME_HEADER {
                        return Ok(());
                    }
                    let (len, typ, _, _) = frame_header(&self.raw);
                    if typ != HEADERS {
                        if self.raw.len() < FRAME_HEADER + len {
                            return Ok(());
                        }
                        let frame = self.raw.split_to(FRAME_HEADER + len);
                        self.ready.unsplit(frame);
                        continue;
                    }
                    let block = match take_block(&self.raw) {
                        Ok(Some(b)) => b,
                        Ok(None) if self.raw.len() <= MAX_BLOCK => return Ok(()),
                        Ok(None) => return Err(invalid("header block too large")),
                        Err(e) => {
                            if matches!(self.mode, Mode::Sniff) {
                                // Not ours to judge: the server answers it.
                                self.mode = Mode::Pass;
                                continue;
                            }
                            return Err(e);
                        }
                    };
                    if matches!(self.mode, Mode::Sniff) {
                        let mut client = Decoder::new();
                        client.set_max_allowed_table_size(TABLE_SIZE);
                        let headers = match decode(&mut client, &block.fragment) {
                            Ok(h) if needs_fix(&h) => h,
                            _ => {
                                self.mode = Mode::Pass;
                                continue;
                            }
                        };
                        let mut codec = Box::new(Codec {
                            client,
                            server: Encoder::new(),
                        });
                        self.raw.advance(block.consumed);
                        encode(&mut codec.server, &block, &headers, &mut self.ready);
                        self.mode = Mode::Transcode(codec);
                        continue;
                    }
                    let Mode::Transcode(codec) = &mut self.mode else {
                        continue;
                    };
                    let headers = decode(&mut codec.client, &block.fragment)?;
                    self.raw.advance(block.consumed);
                    encode(&mut codec.server, &block, &headers, &mut self.ready);
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityTolerant<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.rx.ready.is_empty() {
                let n = this.rx.ready.len().min(buf.remaining());
                buf.put_slice(&this.rx.ready[..n]);
                this.rx.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if matches!(this.rx.mode, Mode::Pass) && this.rx.raw.is_empty() {
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            let mut tmp = [0u8; 8_192];
            let mut rb = ReadBuf::new(&mut tmp);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // End of stream: whatever is left goes to the server as it is.
                    let left = this.rx.raw.split();
                    if left.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                    this.rx.ready.unsplit(left);
                    this.rx.mode = Mode::Pass;
                }
                Poll::Ready(Ok(())) => {
                    this.rx.raw.extend_from_slice(rb.filled());
                    this.rx.process()?;
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityTolerant<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityTolerant<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(typ: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut v = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, typ, flags];
        v.extend_from_slice(&stream.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    fn request(enc: &mut Encoder<'static>, authority: &[u8]) -> Vec<u8> {
        enc.encode([
            (&b":method"[..], &b"POST"[..]),
            (b":scheme", b"http"),
            (b":path", b"/etcdserverpb.Maintenance/Status"),
            (b":authority", authority),
            (b"content-type", b"application/grpc"),
        ])
    }

    /// Feeds `input` in pieces of `step` bytes; returns what the server would read.
    fn run(input: &[u8], step: usize) -> Result<Vec<u8>, std::io::Error> {
        let mut rx = Rx::default();
        for chunk in input.chunks(step) {
            rx.raw.extend_from_slice(chunk);
            rx.process()?;
        }
        Ok(rx.ready.to_vec())
    }

    /// The header lists of every HEADERS block in a server-bound stream.
    fn header_lists(stream: &[u8]) -> Vec<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut dec = Decoder::new();
        let mut at = PREFACE_LEN;
        let mut out = Vec::new();
        while at < stream.len() {
            let (len, typ, _, _) = frame_header(&stream[at..]);
            if typ == HEADERS {
                let b = take_block(&stream[at..]).unwrap().unwrap();
                out.push(dec.decode(&b.fragment).unwrap());
                at += b.consumed;
            } else {
                at += FRAME_HEADER + len;
            }
        }
        out
    }

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    #[test]
    fn authorities_are_fixed_only_when_invalid() {
        assert_eq!(fixed_authority(b"127.0.0.1:2379"), None);
        assert_eq!(fixed_authority(b"localhost"), None);
        assert_eq!(
            fixed_authority(b"http://127.0.0.1:2379"),
            Some(Some(b"127.0.0.1:2379".to_vec()))
        );
        assert_eq!(
            fixed_authority(b"https://[::1]:2379/"),
            Some(Some(b"[::1]:2379".to_vec()))
        );
        assert_eq!(fixed_authority(b"unix:///var/run/x.sock"), Some(None));
    }

    #[test]
    fn a_valid_authority_passes_byte_for_byte() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[])); // SETTINGS
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &request(&mut enc, b"127.0.0.1:2379"),
        ));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        for step in [1, 7, input.len()] {
            assert_eq!(run(&input, step).unwrap(), input);
        }
    }

    #[test]
    fn a_url_authority_is_rewritten_on_every_request_of_the_connection() {
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(0x4, 0, 0, &[]));
        // The first request split over HEADERS (padded) and a CONTINUATION.
        let first = request(&mut enc, b"http://127.0.0.1:2379");
        let (a, b) = first.split_at(first.len() / 2);
        let mut padded = vec![3u8];
        padded.extend_from_slice(a);
        padded.extend_from_slice(&[0, 0, 0]);
        input.extend(frame(HEADERS, PADDED, 1, &padded));
        input.extend(frame(CONTINUATION, END_HEADERS, 1, b));
        input.extend(frame(0x0, END_STREAM, 1, b"\0\0\0\0\0"));
        // The second refers to the first's dynamic table entries.
        input.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            3,
            &request(&mut enc, b"http://127.0.0.1:2379"),
        ));
        for step in [1, 5, input.len()] {
            let out = run(&input, step).unwrap();
            let lists = header_lists(&out);
            assert_eq!(lists.len(), 2);
            for l in &lists {
                let auth = l.iter().find(|(n, _)| n == b":authority").unwrap();
                assert_eq!(auth.1, b"127.0.0.1:2379");
                let path = l.iter().find(|(n, _)| n == b":path").unwrap();
                assert_eq!(path.1, b"/etcdserverpb.Maintenance/Status");
            }
            // DATA frames are unchanged, END_STREAM kept on the second HEADERS.
            assert!(out.windows(5).any(|w| w == b"\0\0\0\0\0"));
        }
    }

    #[test]
    fn garbage_passes_to_the_server_and_a_bomb_is_refused() {
        let mut input = PREFACE.to_vec();
        input.extend(frame(HEADERS, END_HEADERS | PADDED, 1, &[200, 1, 2]));
        assert_eq!(run(&input, 3).unwrap(), input);
        // A huge entry referenced over and over once transcoding.
        let mut enc = Encoder::new();
        let mut input = PREFACE.to_vec();
        input.extend(frame(
            HEADERS,
            END_HEADERS,
            1,
            &request(&mut enc, b"http://a:1"),
        ));
        let big = vec![b'x'; 4000];
        let mut block = enc.encode([(&b"big"[..], &big[..])]);
        for _ in 0..400 {
            block.extend(enc.encode([(&b"big"[..], &big[..])]));
        }
        input.extend(frame(HEADERS, END_HEADERS, 3, &block));
        assert!(run(&input, input.len()).is_err());
    }
}
