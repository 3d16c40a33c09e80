//! The `hss` example's push over Diameter (issue 17, `e2m-diameter-push`): the flags and the
//! push itself. Included by `examples/hss.rs` with `#[path]`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use e2m_diameter_push::net::{DiameterTls, HssDiameter, HssDiameterConfig, HssPeer};
use e2m_https::pki::{DEFAULT_HSS_HOST, PkiDir};
use e2m_msg::IntermediateKeyPush;

/// The Diameter flags of `hss` (all start with `--diameter`).
#[derive(Args, Debug)]
pub(crate) struct HssDiameterArgs {
    /// Push over Diameter instead of HTTPS, to this peer: aaa://FQDN[:PORT] (TCP, default
    /// port 3868) or aaas://FQDN[:PORT] (TLS with the HSS certificate of --certs, default
    /// port 5658). FQDN is the peer's Diameter identity: the EMKS, or a relay in front of it.
    #[arg(long, value_name = "URI")]
    pub(crate) diameter: Option<String>,
    /// Where to reach the --diameter peer (default: its FQDN, resolved).
    #[arg(long, value_name = "ADDR", requires = "diameter")]
    diameter_connect: Option<SocketAddr>,
    /// The HSS's Diameter identity (Origin-Host); over TLS a dNSName of its certificate.
    #[arg(long, value_name = "FQDN", default_value = DEFAULT_HSS_HOST)]
    diameter_host: String,
    /// The HSS's Diameter realm.
    #[arg(long, value_name = "REALM", default_value = "e2m.test")]
    diameter_realm: String,
    /// Destination-Realm: the EMKS's Diameter realm.
    #[arg(long, value_name = "REALM", default_value = "e2m.test")]
    diameter_dest_realm: String,
    /// How long, in seconds, to keep trying a push that is not acknowledged (connection
    /// lost, DIAMETER_TOO_BUSY, DIAMETER_UNABLE_TO_DELIVER): resent with the T flag, the
    /// same End-to-End id and Session-Id, after a backoff.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    diameter_deadline: u64,
}

/// Pushes over Diameter and leaves with DPR/DPA; returns what to print on success.
pub(crate) async fn push(
    args: &HssDiameterArgs,
    pki: &PkiDir,
    push: &IntermediateKeyPush,
) -> Result<String, String> {
    let uri = args.diameter.as_deref().ok_or("--diameter is required")?;
    let peer = HssPeer::from_uri(uri, args.diameter_connect).await?;
    let tls = if peer.tls {
        Some(DiameterTls {
            credentials: pki.hss().map_err(|e| e.to_string())?,
            ca: pki.ca_certificates().map_err(|e| e.to_string())?,
        })
    } else {
        None
    };
    let deadline = Duration::from_secs(args.diameter_deadline);
    let mut config = HssDiameterConfig::new(
        args.diameter_host.clone(),
        args.diameter_realm.clone(),
        args.diameter_dest_realm.clone(),
        vec![peer.clone()],
    );
    config.retry.deadline = deadline;
    config.watchdog_interval = Duration::from_secs(6);
    let client = HssDiameter::start(config, tls.as_ref())
        .await
        .map_err(|e| e.to_string())?;
    if !client.wait_ready(deadline).await {
        client.shutdown(Duration::from_secs(1)).await;
        return Err(format!(
            "no Diameter connection to {} at {} within {}s",
            peer.host,
            peer.addr,
            deadline.as_secs()
        ));
    }
    let result = client.push(push).await;
    client.shutdown(Duration::from_secs(2)).await;
    let ack = result.map_err(|e| format!("push over Diameter to {}: {e}", peer.host))?;
    let expiry = ack.expiry.map_or_else(
        || "not stated".to_owned(),
        |t| format!("Unix time {}", t.unix()),
    );
    Ok(format!(
        "over Diameter to {} (DIAMETER_SUCCESS after {} sending(s); served until {expiry})",
        peer.host, ack.attempts
    ))
}
