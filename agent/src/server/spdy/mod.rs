//! SPDY/3.1 framing, as much as port-forwarding needs (what kubectl's spdystream
//! speaks): frames parsed from a byte stream however it was cut, and encoded; header
//! blocks through one zlib stream per direction with the SPDY dictionary
//! (`dictionary.rs`), flushed after every block. No flow control: spdystream sends no
//! WINDOW_UPDATE and ignores it.
//!
//! Bounds: a frame is at most `MAX_FRAME` bytes and a header block inflates to at most
//! `MAX_HEADERS` bytes; past either the peer gets an error, never a panic.

mod dictionary;

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The largest frame taken (spdystream writes data in 32 KiB pieces).
pub const MAX_FRAME: usize = 1 << 20;
/// The largest inflated header block taken.
const MAX_HEADERS: usize = 64 * 1024;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
pub const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status: the stream is cancelled.
pub const CANCEL: u32 = 5;

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        data: Bytes,
    },
    SynStream {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        fin: bool,
        headers: Headers,
    },
    Headers {
        stream: u32,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_stream: u32,
        status: u32,
    },
    /// SETTINGS, WINDOW_UPDATE and types this side has no use for.
    Ignored {
        kind: u16,
    },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpdyError {
    #[error("SPDY frame of {0} bytes is larger than {MAX_FRAME}")]
    TooLarge(usize),
    #[error("SPDY version {0} is not 3")]
    Version(u16),
    #[error("malformed SPDY frame: {0}")]
    Malformed(&'static str),
    #[error("SPDY header block: {0}")]
    Compression(String),
}

/// One connection's framing state.
pub struct Codec {
    buf: BytesMut,
    inflate: Decompress,
    deflate: Compress,
    dictionary: Vec<u8>,
}

impl Default for Codec {
    fn default() -> Self {
        let dictionary = dictionary::dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        // Right after init, as zlib wants it; cannot fail then.
        let _ = deflate.set_dictionary(&dictionary);
        Codec {
            buf: BytesMut::new(),
            inflate: Decompress::new(true),
            deflate,
            dictionary,
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, SpdyError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(SpdyError::Malformed("frame too short"))
}

impl Codec {
    /// Bytes from the peer, in any pieces.
    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole frame received, if there is one.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        if self.buf.len() < 8 {
            return Ok(None);
        }
        let len = (usize::from(self.buf[5]) << 16)
            | (usize::from(self.buf[6]) << 8)
            | usize::from(self.buf[7]);
        if len > MAX_FRAME {
            return Err(SpdyError::TooLarge(len));
        }
        if self.buf.len() < 8 + len {
            return Ok(None);
        }
        let head: [u8; 8] = self.buf[..8]
            .try_into()
            .map_err(|_| SpdyError::Malformed("header"))?;
        self.buf.advance(8);
        let payload = self.buf.split_to(len).freeze();
        let flags = head[4];
        let fin = flags & FLAG_FIN != 0;
        if head[0] & 0x80 == 0 {
            let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
            return Ok(Some(Frame::Data {
                stream,
                fin,
                data: payload,
            }));
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != 3 {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let stream = || u32_at(&payload, 0).map(|s| s & 0x7fff_ffff);
        Ok(Some(match kind {
            SYN_STREAM => {
                let block = payload
                    .get(10..)
                    .ok_or(SpdyError::Malformed("SYN_STREAM"))?;
                Frame::SynStream {
                    stream: stream()?,
                    fin,
                    headers: self.read_headers(block)?,
                }
            }
            SYN_REPLY | HEADERS => {
                let block = payload.get(4..).ok_or(SpdyError::Malformed("SYN_REPLY"))?;
                let headers = self.read_headers(block)?;
                if kind == SYN_REPLY {
                    Frame::SynReply {
                        stream: stream()?,
                        fin,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream: stream()?,
                        headers,
                    }
                }
            }
            RST_STREAM => Frame::RstStream {
                stream: stream()?,
                status: u32_at(&payload, 4)?,
            },
            PING => Frame::Ping {
                id: u32_at(&payload, 0)?,
            },
            GOAWAY => Frame::GoAway {
                last_stream: stream()?,
                status: u32_at(&payload, 4).unwrap_or(0),
            },
            kind => Frame::Ignored { kind },
        }))
    }

    /// Inflates one header block (in the connection's zlib stream) and reads its pairs.
    fn read_headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let zerr = |e: &dyn std::fmt::Display| SpdyError::Compression(e.to_string());
        let mut out: Vec<u8> = Vec::with_capacity(1024);
        let mut used = 0usize;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(4096);
            }
            let before = self.inflate.total_in();
            match self
                .inflate
                .decompress_vec(&block[used..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => return Err(zerr(&"the zlib stream ended")),
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    let dict = self.dictionary.clone();
                    self.inflate.set_dictionary(&dict).map_err(|e| zerr(&e))?;
                }
                Err(e) => return Err(zerr(&e)),
            }
            used += usize::try_from(self.inflate.total_in() - before).unwrap_or(usize::MAX);
            if out.len() > MAX_HEADERS {
                return Err(zerr(&"the header block inflates past 64 KiB"));
            }
            // Done once every input byte is taken and the output had room to spare.
            if used >= block.len() && out.capacity() > out.len() {
                break;
            }
        }
        parse_pairs(&out)
    }

    /// Deflates one header block into the connection's zlib stream.
    fn write_headers(&mut self, headers: &Headers) -> Result<Vec<u8>, SpdyError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            for s in [k.to_ascii_lowercase().as_str(), v.as_str()] {
                raw.extend_from_slice(&(s.len() as u32).to_be_bytes());
                raw.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut used = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(1024);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(&raw[used..], &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError::Compression(e.to_string()))?;
            used += usize::try_from(self.deflate.total_in() - before).unwrap_or(usize::MAX);
            if used >= raw.len() && out.capacity() > out.len() {
                break;
            }
        }
        Ok(out)
    }

    /// A frame's bytes.
    pub fn encode(&mut self, f: &Frame) -> Result<Bytes, SpdyError> {
        let (kind, flags, payload) = match f {
            Frame::Data { stream, fin, data } => {
                let mut b = BytesMut::with_capacity(8 + data.len());
                b.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                b.extend_from_slice(&frame_len(u8::from(*fin), data.len())?);
                b.extend_from_slice(data);
                return Ok(b.freeze());
            }
            Frame::SynStream {
                stream,
                fin,
                headers,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&stream.to_be_bytes());
                p.extend_from_slice(&[0; 6]);
                p.extend_from_slice(&self.write_headers(headers)?);
                (SYN_STREAM, u8::from(*fin), p)
            }
            Frame::SynReply {
                stream,
                fin,
                headers,
            } => {
                let mut p = stream.to_be_bytes().to_vec();
                p.extend_from_slice(&self.write_headers(headers)?);
                (SYN_REPLY, u8::from(*fin), p)
            }
            Frame::Headers { stream, headers } => {
                let mut p = stream.to_be_bytes().to_vec();
                p.extend_from_slice(&self.write_headers(headers)?);
                (HEADERS, 0, p)
            }
            Frame::RstStream { stream, status } => {
                let mut p = stream.to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                (RST_STREAM, 0, p)
            }
            Frame::Ping { id } => (PING, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway {
                last_stream,
                status,
            } => {
                let mut p = last_stream.to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                (GOAWAY, 0, p)
            }
            Frame::Ignored { .. } => return Ok(Bytes::new()),
        };
        let mut b = BytesMut::with_capacity(8 + payload.len());
        b.extend_from_slice(&[0x80, 0x03]);
        b.extend_from_slice(&kind.to_be_bytes());
        b.extend_from_slice(&frame_len(flags, payload.len())?);
        b.extend_from_slice(&payload);
        Ok(b.freeze())
    }
}

/// Flags and a 24-bit length.
fn frame_len(flags: u8, len: usize) -> Result<[u8; 4], SpdyError> {
    if len > MAX_FRAME {
        return Err(SpdyError::TooLarge(len));
    }
    Ok([flags, (len >> 16) as u8, (len >> 8) as u8, len as u8])
}

/// The name/value pairs of an inflated header block.
fn parse_pairs(b: &[u8]) -> Result<Headers, SpdyError> {
    let bad = SpdyError::Malformed("header block");
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let end = at
            .checked_add(n)
            .ok_or(SpdyError::Malformed("header block"))?;
        let s = b.get(at..end).ok_or(SpdyError::Malformed("header block"))?;
        at = end;
        Ok(s)
    };
    let word = |s: &[u8]| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize;
    let count = word(take(4)?);
    if count > 1024 {
        return Err(bad);
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let n = word(take(4)?);
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = word(take(4)?);
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        out.push((name, value));
    }
    Ok(out)
}

/// The first value of header `name`.
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Headers {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn frames_survive_any_cut_and_header_blocks_share_one_stream() {
        let (mut client, mut server) = (Codec::default(), Codec::default());
        let frames = [
            Frame::SynStream {
                stream: 1,
                fin: false,
                headers: pairs(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::Data {
                stream: 1,
                fin: true,
                data: Bytes::new(),
            },
            Frame::SynStream {
                stream: 3,
                fin: false,
                headers: pairs(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::Data {
                stream: 3,
                fin: false,
                data: Bytes::from_static(b"GET / HTTP/1.0\r\n\r\n"),
            },
            Frame::Ping { id: 1 },
            Frame::RstStream {
                stream: 3,
                status: CANCEL,
            },
            Frame::GoAway {
                last_stream: 0,
                status: 0,
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend_from_slice(&client.encode(f).unwrap());
        }
        // One byte at a time: frames come out whole, in order.
        let mut got = Vec::new();
        for b in wire {
            server.push(&[b]);
            while let Some(f) = server.next_frame().unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
        // And back: the server's own stream of header blocks.
        let reply = server
            .encode(&Frame::SynReply {
                stream: 3,
                fin: false,
                headers: vec![],
            })
            .unwrap();
        client.push(&reply);
        assert_eq!(
            client.next_frame().unwrap(),
            Some(Frame::SynReply {
                stream: 3,
                fin: false,
                headers: vec![]
            })
        );
    }

    #[test]
    fn hostile_frames_are_errors() {
        let mut c = Codec::default();
        c.push(&[0x80, 0x02, 0, 1, 0, 0, 0, 0]);
        assert_eq!(c.next_frame(), Err(SpdyError::Version(2)));
        let mut c = Codec::default();
        c.push(&[0, 0, 0, 1, 0, 0xff, 0xff, 0xff]);
        assert!(matches!(c.next_frame(), Err(SpdyError::TooLarge(_))));
        let mut c = Codec::default();
        // A SYN_STREAM whose header block is not zlib.
        c.push(&[
            0x80, 0x03, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
        ]);
        assert!(matches!(c.next_frame(), Err(SpdyError::Compression(_))));
        assert!(parse_pairs(&[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(parse_pairs(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
