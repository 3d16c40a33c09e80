//! Hand-made DTLS 1.2 datagrams for the checks a real client cannot make: a ClientHello
//! with the cipher suites and cookie the check chooses (RFC 6347 §4.2.1, §4.3.2; RFC 5246
//! §7.4.1.2), and readers of what comes back (HelloVerifyRequest, ServerHello, alerts).

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::UdpSocket;

/// The record header length (RFC 6347 §4.1).
const RECORD_HEADER: usize = 13;
/// The handshake header length (RFC 6347 §4.2.2).
const HANDSHAKE_HEADER: usize = 12;

/// Content type: alert.
pub(crate) const ALERT: u8 = 21;
/// Content type: handshake.
pub(crate) const HANDSHAKE: u8 = 22;
/// Handshake type: ServerHello.
pub(crate) const SERVER_HELLO: u8 = 2;
/// Handshake type: HelloVerifyRequest.
pub(crate) const HELLO_VERIFY_REQUEST: u8 = 3;

/// TLS_PSK_WITH_AES_128_CCM_8 (RFC 6655), the CoAP PSK suite (RFC 7252 §9.1.3.1).
pub(crate) const PSK_AES_128_CCM_8: u16 = 0xC0A8;
/// TLS_PSK_WITH_NULL_SHA (RFC 4785): no encryption at all; no EMSE may accept it.
pub(crate) const PSK_NULL_SHA: u16 = 0x002C;

fn u24(n: usize) -> [u8; 3] {
    let b = u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    [b[1], b[2], b[3]]
}

/// A DTLS 1.2 ClientHello offering `suites`, carrying `cookie`, as handshake message and
/// record number `seq`, with the extended master secret extension (RFC 7627) and
/// `random` as the client random.
pub(crate) fn client_hello(suites: &[u16], cookie: &[u8], seq: u16, random: &[u8; 32]) -> Vec<u8> {
    let mut body = vec![0xfe, 0xfd];
    body.extend_from_slice(random);
    body.push(0); // no session id
    body.push(u8::try_from(cookie.len()).unwrap_or(u8::MAX));
    body.extend_from_slice(&cookie[..cookie.len().min(255)]);
    body.extend_from_slice(&u16::try_from(suites.len() * 2).unwrap_or(0).to_be_bytes());
    for suite in suites {
        body.extend_from_slice(&suite.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null only
    body.extend_from_slice(&[0, 4, 0x00, 0x17, 0, 0]); // extended_master_secret
    let mut hs = vec![1];
    hs.extend_from_slice(&u24(body.len()));
    hs.extend_from_slice(&seq.to_be_bytes());
    hs.extend_from_slice(&[0, 0, 0]); // fragment offset
    hs.extend_from_slice(&u24(body.len()));
    hs.extend_from_slice(&body);
    let mut record = vec![HANDSHAKE, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0];
    record.extend_from_slice(&seq.to_be_bytes());
    record.extend_from_slice(&u16::try_from(hs.len()).unwrap_or(0).to_be_bytes());
    record.extend_from_slice(&hs);
    record
}

/// What the first record of a datagram is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A HelloVerifyRequest and its cookie.
    HelloVerifyRequest(Vec<u8>),
    /// A ServerHello and the suite it chose.
    ServerHello(u16),
    /// An alert: level and description.
    Alert(u8, u8),
    /// Something else (content type, handshake type if any).
    Other(u8, Option<u8>),
    /// Nothing arrived in time.
    Silence,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Answer::HelloVerifyRequest(c) => {
                write!(f, "a HelloVerifyRequest ({}-octet cookie)", c.len())
            }
            Answer::ServerHello(s) => write!(f, "a ServerHello choosing suite 0x{s:04X}"),
            Answer::Alert(level, d) => write!(
                f,
                "a {} alert {}",
                if *level == 2 { "fatal" } else { "warning" },
                e2m_dtls::AlertDescription(*d)
            ),
            Answer::Other(ct, hs) => write!(f, "a record of content type {ct} ({hs:?})"),
            Answer::Silence => f.write_str("no answer"),
        }
    }
}

/// Reads the first record of `datagram`.
pub(crate) fn read(datagram: &[u8]) -> Answer {
    let Some(&content) = datagram.first() else {
        return Answer::Other(0, None);
    };
    let body = datagram.get(RECORD_HEADER..).unwrap_or(&[]);
    match content {
        ALERT => match body {
            [level, description, ..] => Answer::Alert(*level, *description),
            _ => Answer::Other(ALERT, None),
        },
        HANDSHAKE => {
            let Some(&kind) = body.first() else {
                return Answer::Other(HANDSHAKE, None);
            };
            let msg = body.get(HANDSHAKE_HEADER..).unwrap_or(&[]);
            match kind {
                // server_version(2) cookie<0..255>
                HELLO_VERIFY_REQUEST => match msg.get(2) {
                    Some(&len) => Answer::HelloVerifyRequest(
                        msg.get(3..3 + usize::from(len)).unwrap_or(&[]).to_vec(),
                    ),
                    None => Answer::Other(HANDSHAKE, Some(kind)),
                },
                // server_version(2) random(32) session_id<0..32> cipher_suite(2)
                SERVER_HELLO => {
                    let sid = msg.get(34).map_or(0, |&n| usize::from(n));
                    match msg.get(35 + sid..37 + sid) {
                        Some(&[a, b]) => Answer::ServerHello(u16::from_be_bytes([a, b])),
                        _ => Answer::Other(HANDSHAKE, Some(kind)),
                    }
                }
                other => Answer::Other(HANDSHAKE, Some(other)),
            }
        }
        other => Answer::Other(other, None),
    }
}

/// Sends `datagram` to `to` from `socket` and reads the first answer within `wait`.
pub(crate) async fn exchange(
    socket: &UdpSocket,
    to: SocketAddr,
    datagram: &[u8],
    wait: Duration,
) -> Result<Answer, std::io::Error> {
    socket.send_to(datagram, to).await?;
    let mut buf = vec![0u8; 4096];
    loop {
        match tokio::time::timeout(wait, socket.recv_from(&mut buf)).await {
            Err(_) => return Ok(Answer::Silence),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Ok(Answer::Silence);
            }
            Ok(Err(e)) => return Err(e),
            Ok(Ok((n, from))) if from == to => return Ok(read(&buf[..n])),
            // A datagram from elsewhere: not ours.
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_hello_reads_back() {
        let hello = client_hello(&[PSK_AES_128_CCM_8], &[1, 2, 3], 1, &[7; 32]);
        assert_eq!(hello[0], HANDSHAKE);
        assert_eq!(hello[RECORD_HEADER], 1);
        let len = usize::from(u16::from_be_bytes([hello[11], hello[12]]));
        assert_eq!(len, hello.len() - RECORD_HEADER);
        // cookie after version, random and the empty session id
        let at = RECORD_HEADER + HANDSHAKE_HEADER + 2 + 32 + 1;
        assert_eq!(&hello[at..at + 4], &[3, 1, 2, 3]);
    }

    #[test]
    fn answers_read() {
        let mut hvr = vec![HANDSHAKE, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        hvr.extend_from_slice(&[HELLO_VERIFY_REQUEST, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 5]);
        hvr.extend_from_slice(&[0xfe, 0xff, 2, 9, 9]);
        assert_eq!(read(&hvr), Answer::HelloVerifyRequest(vec![9, 9]));
        let alert = [ALERT, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, 2, 40];
        assert_eq!(read(&alert), Answer::Alert(2, 40));
        let mut sh = vec![HANDSHAKE, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0];
        sh.extend_from_slice(&[SERVER_HELLO, 0, 0, 38, 0, 1, 0, 0, 0, 0, 0, 38]);
        sh.extend_from_slice(&[0xfe, 0xfd]);
        sh.extend_from_slice(&[0; 32]);
        sh.push(0);
        sh.extend_from_slice(&[0xc0, 0xa8, 0]);
        assert_eq!(read(&sh), Answer::ServerHello(PSK_AES_128_CCM_8));
        assert_eq!(read(&[]), Answer::Other(0, None));
    }
}
