//! Who is at the other end of a client connection, as the transport proved it.
//!
//! Every client request carries a `ClientIdentity` in its extensions (set by the listener
//! for the connection's life). `common_name` is the subject CN of a client certificate the
//! TLS handshake verified against `--trusted-ca-file`; it is present only when the listener
//! asked for one (`--client-cert-auth`), never taken from anything the client merely says.

use std::net::SocketAddr;

#[derive(Clone, Debug, Default)]
pub struct ClientIdentity {
    /// The peer's address (for logs).
    pub remote: Option<SocketAddr>,
    /// The CN of the verified client certificate.
    pub common_name: Option<String>,
}
