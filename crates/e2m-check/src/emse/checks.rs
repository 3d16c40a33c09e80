//! The EMSE checks, driven as UEs: each pushes the keys it needs (fresh key ids, so the
//! EMSE's key cache never answers for an earlier check) and opens its own connections.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use e2m_coap::{Code, Message, MessageType, OptionNumber, Token};
use e2m_dtls::oscore_client::{OscoreClient, OscoreClientError};
use e2m_dtls::{AlertDescription, DtlsError};
use e2m_kdf::E2mKey;
use e2m_msg::{AppIdentity, KeyId};
use e2m_oscore::SenderSequence;
use e2m_oscore::e2m::E2mOscoreProfile;
use tokio::net::UdpSocket;

use super::EmseCx;
use super::dtls_wire::{self, Answer, PSK_AES_128_CCM_8, PSK_NULL_SHA};
use crate::emks::random;
use crate::verdict::{CheckDef, Outcome, Stop, check_table, clip, ensure, fail, skip};

/// Alerts that end a PSK handshake the server cannot complete: the key is wrong or not
/// held (RFC 4279 §2: `decrypt_error` or `unknown_psk_identity`; `bad_record_mac` when the
/// Finished record does not decrypt, RFC 5246 §7.2.2).
const PSK_FAILURE_ALERTS: [AlertDescription; 3] = [
    AlertDescription::DECRYPT_ERROR,
    AlertDescription::UNKNOWN_PSK_IDENTITY,
    AlertDescription(20),
];

/// Whether a handshake ended at its deadline (the client's own timer, or dimpl's).
fn is_timeout(e: &DtlsError) -> bool {
    match e {
        DtlsError::Timeout => true,
        DtlsError::Protocol(text) => text.contains("Timeout"),
        _ => false,
    }
}

async fn udp_socket(to: SocketAddr) -> Result<UdpSocket, Stop> {
    let local: IpAddr = if to.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    UdpSocket::bind(SocketAddr::new(local, 0))
        .await
        .map_err(|e| Stop::Fail(format!("UDP socket: {e}")))
}

async fn exchange(cx: &EmseCx, socket: &UdpSocket, datagram: &[u8]) -> Result<Answer, Stop> {
    dtls_wire::exchange(
        socket,
        cx.t.dtls,
        datagram,
        cx.t.alert_wait.min(Duration::from_secs(3)),
    )
    .await
    .map_err(|e| Stop::Fail(format!("UDP to {}: {e}", cx.t.dtls)))
}

/// The first ClientHello offering `suites` and the cookie of its HelloVerifyRequest.
async fn cookie_for(
    cx: &EmseCx,
    socket: &UdpSocket,
    suites: &[u16],
    client_random: &[u8; 32],
) -> Result<Result<Vec<u8>, Answer>, Stop> {
    let hello = dtls_wire::client_hello(suites, &[], 0, client_random);
    Ok(match exchange(cx, socket, &hello).await? {
        Answer::HelloVerifyRequest(cookie) => Ok(cookie),
        other => Err(other),
    })
}

// ---- DTLS 1.2 PSK (seed 6.x.2.3; RFC 6347; RFC 4279) --------------------------------------

async fn cookie_exchange(cx: &EmseCx) -> Outcome {
    let socket = udp_socket(cx.t.dtls).await?;
    let client_random = random::<32>()?;
    let cookie = match cookie_for(cx, &socket, &[PSK_AES_128_CCM_8], &client_random).await? {
        Ok(cookie) => cookie,
        Err(other) => fail!("a ClientHello without cookie got {other}, want a HelloVerifyRequest"),
    };
    ensure!(
        !cookie.is_empty(),
        "the HelloVerifyRequest carries an empty cookie"
    );
    // A forged cookie (every bit flipped) must not be taken.
    let forged: Vec<u8> = cookie.iter().map(|b| !b).collect();
    let hello = dtls_wire::client_hello(&[PSK_AES_128_CCM_8], &forged, 1, &client_random);
    let answer = exchange(cx, &socket, &hello).await?;
    match answer {
        Answer::ServerHello(_) => fail!("a ClientHello with a forged cookie got a ServerHello"),
        Answer::HelloVerifyRequest(_) | Answer::Silence | Answer::Alert(..) => Ok(format!(
            "HelloVerifyRequest with a {}-octet cookie; a forged cookie got {answer}",
            cookie.len()
        )),
        other => fail!("a ClientHello with a forged cookie got {other}"),
    }
}

async fn ccm8_selected(cx: &EmseCx) -> Outcome {
    let socket = udp_socket(cx.t.dtls).await?;
    let client_random = random::<32>()?;
    let cookie = match cookie_for(cx, &socket, &[PSK_AES_128_CCM_8], &client_random).await? {
        Ok(cookie) => cookie,
        Err(other) => fail!("a ClientHello got {other}, want a HelloVerifyRequest"),
    };
    let hello = dtls_wire::client_hello(&[PSK_AES_128_CCM_8], &cookie, 1, &client_random);
    match exchange(cx, &socket, &hello).await? {
        Answer::ServerHello(PSK_AES_128_CCM_8) => {
            Ok("ServerHello with TLS_PSK_WITH_AES_128_CCM_8 (0xC0A8)".into())
        }
        other => fail!("a ClientHello offering only TLS_PSK_WITH_AES_128_CCM_8 got {other}"),
    }
}

async fn no_common_suite(cx: &EmseCx) -> Outcome {
    let socket = udp_socket(cx.t.dtls).await?;
    let client_random = random::<32>()?;
    let first = match cookie_for(cx, &socket, &[PSK_NULL_SHA], &client_random).await? {
        Ok(cookie) => {
            let hello = dtls_wire::client_hello(&[PSK_NULL_SHA], &cookie, 1, &client_random);
            exchange(cx, &socket, &hello).await?
        }
        Err(answer) => answer,
    };
    match first {
        Answer::Alert(2, 40) | Answer::Alert(2, 71) => Ok(format!("{first}")),
        Answer::ServerHello(suite) => fail!(
            "a ClientHello offering only TLS_PSK_WITH_NULL_SHA got a ServerHello choosing 0x{suite:04X}"
        ),
        other => fail!(
            "a ClientHello offering only TLS_PSK_WITH_NULL_SHA got {other}, want a fatal handshake_failure alert (RFC 5246 §7.4.1.3)"
        ),
    }
}

/// A CoAP GET of the target's path (a token of 4 random octets).
fn coap_get(cx: &EmseCx) -> Result<Message, Stop> {
    let token = Token::new(&random::<4>()?).map_err(|e| Stop::Fail(format!("token: {e}")))?;
    let mut get = Message::new(MessageType::Confirmable, Code::GET, 1, token);
    get.set_uri_path(&cx.t.coap_path)
        .map_err(|e| Stop::Fail(format!("Uri-Path: {e}")))?;
    Ok(get)
}

async fn handshake(cx: &EmseCx) -> Outcome {
    let ue = cx.t.plan.shared(1);
    let pushed = cx.push(ue).await?;
    let psk = cx.ue_key(&pushed)?;
    let mut client = match cx
        .connect(&ue.app, pushed.key_id, &psk, cx.t.handshake_timeout)
        .await?
    {
        Ok(client) => client,
        Err(e) => fail!(
            "handshake with psk_identity e2m1.{:08x}.{} and the e2m_key for {}: {e}",
            pushed.key_id,
            ue.app,
            cx.t.emse_id
        ),
    };
    let answer = client.request(&coap_get(cx)?, cx.t.handshake_timeout).await;
    let _ = client.close().await;
    match answer {
        Ok(response) => Ok(format!(
            "handshake completed on the e2m_key; CoAP GET /{} answered {}",
            cx.t.coap_path, response.code
        )),
        Err(e) => fail!("handshake completed, but the CoAP request over it failed: {e}"),
    }
}

/// A handshake that must fail with a PSK failure alert, quickly.
async fn must_fail(
    cx: &EmseCx,
    app: &AppIdentity,
    key_id: u32,
    psk: &E2mKey,
    what: &str,
) -> Outcome {
    let started = std::time::Instant::now();
    match cx.connect(app, key_id, psk, cx.t.alert_wait).await? {
        Ok(client) => {
            let _ = client.close().await;
            fail!("{what}: the handshake completed")
        }
        Err(DtlsError::Alert(alert)) if PSK_FAILURE_ALERTS.contains(&alert) => Ok(format!(
            "{what}: fatal alert {alert} after {} ms",
            started.elapsed().as_millis()
        )),
        Err(DtlsError::Alert(alert)) => fail!(
            "{what}: fatal alert {alert}, want decrypt_error, unknown_psk_identity or bad_record_mac"
        ),
        Err(e) if is_timeout(&e) => fail!(
            "{what}: no alert within {} s (the UE waits for its deadline)",
            cx.t.alert_wait.as_secs()
        ),
        Err(e) => fail!("{what}: {e}, want a fatal alert"),
    }
}

async fn wrong_key(cx: &EmseCx) -> Outcome {
    let ue = cx.t.plan.shared(2);
    let pushed = cx.push(ue).await?;
    let wrong = E2mKey::from_array(random::<32>()?);
    must_fail(cx, &ue.app, pushed.key_id, &wrong, "a wrong PSK").await
}

async fn psk_identity_format(cx: &EmseCx) -> Outcome {
    let ue = cx.t.plan.shared(9);
    let pushed = cx.push(ue).await?;
    let psk = cx.ue_key(&pushed)?;
    // The application identity alone: no "e2m1." version, no key id.
    let started = std::time::Instant::now();
    match cx
        .connect_raw(ue.app.as_str().as_bytes(), &psk, cx.t.alert_wait)
        .await?
    {
        Ok(client) => {
            let _ = client.close().await;
            fail!("a psk_identity without the e2m1.<key id>. prefix completed a handshake")
        }
        Err(DtlsError::Alert(alert)) => Ok(format!(
            "a psk_identity without the e2m1.<key id>. prefix: fatal alert {alert} after {} ms",
            started.elapsed().as_millis()
        )),
        Err(e) if is_timeout(&e) => fail!(
            "a psk_identity that is not e2m's: no alert within {} s",
            cx.t.alert_wait.as_secs()
        ),
        Err(e) => fail!("a psk_identity that is not e2m's: {e}, want a fatal alert"),
    }
}

async fn unknown_identity(cx: &EmseCx) -> Outcome {
    let app =
        cx.t.plan
            .unprovisioned(crate::emks::random_u32()?)
            .map_err(Stop::Fail)?;
    let psk = E2mKey::from_array(random::<32>()?);
    must_fail(
        cx,
        &app,
        crate::emks::random_u32()?,
        &psk,
        "an identity never provisioned",
    )
    .await
}

async fn unknown_key_id(cx: &EmseCx) -> Outcome {
    let ue = cx.t.plan.shared(3);
    let pushed = cx.push(ue).await?;
    // The UE claims a key id never pushed, with a key that would be right for the pushed one.
    let psk = cx.ue_key(&pushed)?;
    must_fail(
        cx,
        &ue.app,
        pushed.key_id ^ 0x8000_0001,
        &psk,
        "a key id never pushed",
    )
    .await
}

async fn evicted_key_id(cx: &EmseCx) -> Outcome {
    let ue = cx.t.plan.shared(4);
    let n = cx.t.keys_per_ue;
    let mut keys = Vec::new();
    for _ in 0..=n {
        keys.push(cx.push(ue).await?);
    }
    let oldest = &keys[0];
    let psk = cx.ue_key(oldest)?;
    let evidence = must_fail(
        cx,
        &ue.app,
        oldest.key_id,
        &psk,
        &format!("the right key of a key id evicted by {n} newer pushes"),
    )
    .await?;
    let newest = &keys[n];
    let psk = cx.ue_key(newest)?;
    match cx
        .connect(&ue.app, newest.key_id, &psk, cx.t.handshake_timeout)
        .await?
    {
        Ok(client) => {
            let _ = client.close().await;
            Ok(format!("{evidence}; the newest key connects"))
        }
        Err(e) => fail!("the newest key id after {n} pushes: {e}"),
    }
}

async fn retained_older_key(cx: &EmseCx) -> Outcome {
    let n = cx.t.keys_per_ue;
    if n < 2 {
        skip!("one key per UE: no older key is retained");
    }
    let ue = cx.t.plan.shared(5);
    let kept = cx.push(ue).await?;
    for _ in 1..n {
        cx.push(ue).await?;
    }
    let psk = cx.ue_key(&kept)?;
    match cx
        .connect(&ue.app, kept.key_id, &psk, cx.t.handshake_timeout)
        .await?
    {
        Ok(client) => {
            let _ = client.close().await;
            Ok(format!(
                "a UE on its older key (then {} newer pushes) completes the handshake",
                n - 1
            ))
        }
        Err(e) => fail!(
            "a UE on an older key still retained at the EMKS ({} newer pushes): {e}",
            n - 1
        ),
    }
}

// ---- OSCORE (RFC 8613, e2m profile) -------------------------------------------------------

fn oscore_addr(cx: &EmseCx) -> Result<SocketAddr, Stop> {
    match cx.t.oscore {
        Some(addr) => Ok(addr),
        None => skip!("the EMSE offers no OSCORE endpoint (give --oscore ADDR)"),
    }
}

async fn oscore_client(
    to: SocketAddr,
    app: &AppIdentity,
    key_id: u32,
    key: &E2mKey,
) -> Result<OscoreClient, Stop> {
    let context = E2mOscoreProfile::PROVISIONAL
        .ue_context(
            key,
            app,
            KeyId::from_u32(key_id),
            SenderSequence::volatile(),
        )
        .map_err(|e| Stop::Fail(format!("OSCORE context: {e}")))?;
    let mut client = OscoreClient::connect(to, context)
        .await
        .map_err(|e| Stop::Fail(format!("OSCORE client: {e}")))?;
    client.set_retransmit(Duration::from_millis(500));
    Ok(client)
}

async fn oscore_first_contact(cx: &EmseCx) -> Outcome {
    let addr = oscore_addr(cx)?;
    let ue = cx.t.plan.shared(6);
    let pushed = cx.push(ue).await?;
    let key = cx.ue_key(&pushed)?;
    let mut client = oscore_client(addr, &ue.app, pushed.key_id, &key).await?;
    match client.request(&coap_get(cx)?, cx.t.handshake_timeout).await {
        Ok(response) => Ok(format!(
            "first request with the ID Context answered, verified: {} ({} datagrams)",
            response.code,
            client.wire_log().len()
        )),
        Err(e) => fail!("first OSCORE request: {e}"),
    }
}

/// A UDP relay between an OSCORE client and the EMSE that keeps what the client sent.
struct Relay {
    front_addr: SocketAddr,
    back: Arc<UdpSocket>,
    sent: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(to: SocketAddr) -> Result<Relay, Stop> {
        let io = |e: std::io::Error| Stop::Fail(format!("relay: {e}"));
        let front_ip: IpAddr = if to.is_ipv4() {
            Ipv4Addr::LOCALHOST.into()
        } else {
            Ipv6Addr::LOCALHOST.into()
        };
        let front = UdpSocket::bind(SocketAddr::new(front_ip, 0))
            .await
            .map_err(io)?;
        let back = Arc::new(udp_socket(to).await?);
        back.connect(to).await.map_err(io)?;
        let front_addr = front.local_addr().map_err(io)?;
        let sent = Arc::new(Mutex::new(Vec::new()));
        let task = {
            let back = Arc::clone(&back);
            let sent = Arc::clone(&sent);
            tokio::spawn(async move {
                let mut client = None;
                let mut a = vec![0u8; 2048];
                let mut b = vec![0u8; 2048];
                loop {
                    tokio::select! {
                        got = front.recv_from(&mut a) => {
                            let Ok((n, from)) = got else { continue };
                            client = Some(from);
                            sent.lock().unwrap_or_else(PoisonError::into_inner).push(a[..n].to_vec());
                            let _ = back.send(&a[..n]).await;
                        }
                        got = back.recv(&mut b) => {
                            let Ok(n) = got else { continue };
                            if let Some(c) = client {
                                let _ = front.send_to(&b[..n], c).await;
                            }
                        }
                    }
                }
            })
        };
        Ok(Relay {
            front_addr,
            back,
            sent,
            task,
        })
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn oscore_replay(cx: &EmseCx) -> Outcome {
    let addr = oscore_addr(cx)?;
    let ue = cx.t.plan.shared(7);
    let pushed = cx.push(ue).await?;
    let key = cx.ue_key(&pushed)?;
    let relay = Relay::start(addr).await?;
    let mut client = oscore_client(relay.front_addr, &ue.app, pushed.key_id, &key).await?;
    if let Err(e) = client.request(&coap_get(cx)?, cx.t.handshake_timeout).await {
        fail!("the request to replay was not answered: {e}");
    }
    relay.task.abort();
    let Some(mut replayed) = relay
        .sent
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .last()
        .cloned()
    else {
        fail!("the relay saw no request");
    };
    ensure!(replayed.len() >= 4, "the captured request is not CoAP");
    // A new message ID, so that CoAP deduplication (RFC 7252 §4.5) cannot be what answers:
    // only OSCORE's replay window (RFC 8613 §7.4) can refuse it.
    let id = u16::from_be_bytes([replayed[2], replayed[3]]).wrapping_add(0x5a5a);
    replayed[2..4].copy_from_slice(&id.to_be_bytes());
    relay
        .back
        .send(&replayed)
        .await
        .map_err(|e| Stop::Fail(format!("replay: {e}")))?;
    let mut buf = vec![0u8; 2048];
    let answer = tokio::time::timeout(
        cx.t.alert_wait.min(Duration::from_secs(2)),
        relay.back.recv(&mut buf),
    )
    .await;
    let Ok(Ok(n)) = answer else {
        return Ok("the replayed request got no answer".into());
    };
    let Ok(message) = Message::decode(&buf[..n]) else {
        fail!("the replayed request got {n} octets that are not CoAP");
    };
    if message.options.get(OptionNumber::OSCORE).is_some() {
        fail!(
            "the replayed request got a protected answer ({}): it was processed twice",
            message.code
        );
    }
    Ok(format!(
        "the replayed request got an unprotected {} {}",
        message.code,
        clip(&String::from_utf8_lossy(&message.payload), 40)
    ))
}

async fn oscore_unknown_key_id(cx: &EmseCx) -> Outcome {
    let addr = oscore_addr(cx)?;
    let ue = cx.t.plan.shared(8);
    let pushed = cx.push(ue).await?;
    let key = cx.ue_key(&pushed)?;
    let mut client = oscore_client(addr, &ue.app, pushed.key_id ^ 0x8000_0001, &key).await?;
    match client.request(&coap_get(cx)?, cx.t.handshake_timeout).await {
        Err(OscoreClientError::Reauthenticate) => Ok(
            "unprotected 4.01 \"Security context not found\" to a request with the ID Context: the UE re-authenticates".into(),
        ),
        Ok(response) => fail!("a request on a key id never pushed was answered {}", response.code),
        // A budget of key fetches per source (e2m's EMSE has one) spent by earlier runs from
        // this address: a refusal to look, not a wrong answer; the check cannot tell.
        Err(OscoreClientError::RetryAfter(secs)) => skip!(
            "the EMSE's key-fetch budget for this source is spent (retry after {secs} s): run again later"
        ),
        Err(e) => fail!(
            "a request on a key id never pushed: {e}; want 4.01 Security context not found"
        ),
    }
}

/// The EMSE checks, in the order they run.
pub(super) static CHECKS: &[CheckDef<EmseCx>] = check_table![EmseCx;
    cookie_exchange => {
        name: "dtls.cookie-exchange",
        clause: "RFC 6347 §4.2.1",
        sends: "a ClientHello without cookie; then one with the cookie's bits flipped",
        expects: "a HelloVerifyRequest with a cookie; for the forged cookie never a ServerHello",
    },
    ccm8_selected => {
        name: "dtls.ccm8-selected",
        clause: "6.x.2.3 step 1; RFC 7252 §9.1.3.1; RFC 6655",
        sends: "a ClientHello (with its cookie) offering only TLS_PSK_WITH_AES_128_CCM_8",
        expects: "a ServerHello choosing 0xC0A8",
    },
    no_common_suite => {
        name: "dtls.no-common-suite",
        clause: "RFC 5246 §7.4.1.3",
        sends: "a ClientHello offering only TLS_PSK_WITH_NULL_SHA",
        expects: "a fatal handshake_failure (or insufficient_security) alert; never a ServerHello",
    },
    handshake => {
        name: "dtls.handshake",
        clause: "6.x.2.3 steps 1-8",
        sends: "a DTLS 1.2 PSK handshake with psk_identity `e2m1.<key id>.<identity>` and the e2m_key derived for the EMSE_Id, then a CoAP GET",
        expects: "the handshake completes; the GET is answered",
    },
    wrong_key => {
        name: "dtls.wrong-key",
        clause: "RFC 4279 §2; RFC 5246 §7.2.2",
        sends: "a handshake with the right identity and a wrong PSK",
        expects: "a fatal decrypt_error (or unknown_psk_identity, bad_record_mac) alert, not silence",
    },
    psk_identity_format => {
        name: "dtls.psk-identity-format",
        clause: "6.x.2.3 step 4; e2m psk_identity (`e2m1.<key id>.<identity>`)",
        sends: "a handshake whose psk_identity is the application identity alone",
        expects: "a fatal alert; never a completed handshake",
    },
    unknown_identity => {
        name: "dtls.unknown-identity",
        clause: "RFC 4279 §2; 6.x.2.1 user identity",
        sends: "a handshake naming an identity never provisioned",
        expects: "a fatal decrypt_error or unknown_psk_identity alert",
    },
    unknown_key_id => {
        name: "dtls.unknown-key-id",
        clause: "6.x.2.1 key identifier; RFC 4279 §2",
        sends: "a handshake naming a key id never pushed",
        expects: "a fatal decrypt_error or unknown_psk_identity alert",
    },
    evicted_key_id => {
        name: "dtls.evicted-key-id",
        clause: "6.x.2.1 key identifier; RFC 4279 §2",
        sends: "N+1 pushes; a handshake on the evicted key, then on the newest",
        expects: "a fatal alert for the evicted key id; the newest completes",
    },
    retained_older_key => {
        name: "dtls.retained-older-key",
        clause: "6.x.2.1 key identifier, cases a and b",
        sends: "a key, N-1 newer pushes, then a handshake on the older key",
        expects: "the handshake completes (the EMSE fetches by key id, not the latest)",
    },
    oscore_first_contact => {
        name: "oscore.first-contact",
        clause: "RFC 8613 §8; e2m OSCORE profile",
        sends: "a protected CoAP GET with the ID Context (application identity) and Sender ID (key id), no handshake",
        expects: "a verified protected answer (after an Echo round where the EMSE asks for one)",
    },
    oscore_replay => {
        name: "oscore.replay",
        clause: "RFC 8613 §7.4",
        sends: "a protected request already answered, again with a new CoAP message ID",
        expects: "no protected answer: an unprotected 4.01 Replay detected, or none",
    },
    oscore_unknown_key_id => {
        name: "oscore.unknown-key-id",
        clause: "RFC 8613 §8.2; e2m OSCORE profile",
        sends: "a protected request on a key id never pushed",
        expects: "an unprotected 4.01 Security context not found (the UE re-authenticates)",
    },
];
