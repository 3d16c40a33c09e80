//! `ue --akma`: the UE of TS 33.535 after 5G AKA. The USIM answers the challenge (MILENAGE,
//! TS 35.206), the ME derives K_AUSF and RES* for the serving network name (TS 33.501 A.2,
//! A.4), then K_AKMA and the A-KID (TS 33.535 §6.1, A.2, A.3) and K_AF for the AF's FQDN
//! and the Ua* protocol id (A.4), and connects to the AF over DTLS 1.2 PSK in the Ua*
//! profile of TS 24.109 K.3.2 (`psk_identity` "3GPP-AKMA" + A-KID, PSK = K_AF).

use std::net::SocketAddr;
use std::time::Duration;

use e2m_aka::{Aka, Opc, SubscriberKey};
use e2m_coap::Message;
use e2m_dtls::akma::{
    AKMA_PSK_IDENTITY_HINT, AKMA_UA_PROTOCOL, AkmaIdentityForm, akma_psk_identity,
};
use e2m_dtls::client::{DtlsClient, UeDtlsConfig};
use e2m_dtls::{AlertDescription, DtlsError, DtlsLimits};
use e2m_keyid::akma::{
    AfId, AkmaAnchor, Fqdn, Realm, RoutingIndicator, ServingNetworkName, Supi, UaProtocolId, kaf,
};

use super::cli::{Hex, hex_array};

/// The flags of `--akma` (all need `--k`, `--opc`, `--rand` and `--autn`).
#[derive(clap::Args, Debug)]
pub(crate) struct AkmaArgs {
    /// Run 5G AKA and AKMA, and connect to an AF with K_AF (TS 33.535; TS 24.109 K.3.2)
    /// instead of the e2m profile.
    #[arg(long, requires_all = ["k", "opc", "rand", "autn", "supi", "serving_network_name",
          "home_network", "af_fqdn"],
          conflicts_with_all = ["psk_identity", "identity", "key_id", "psk_hex", "emse_id"])]
    pub(crate) akma: bool,
    /// The UE's SUPI (TS 29.571 form: imsi-<digits> or nai-<user@realm>).
    #[arg(long, value_name = "SUPI", value_parser = Supi::parse, requires = "akma")]
    supi: Option<Supi>,
    /// The serving network name of the 5G AKA run (TS 33.501 §6.1.1.4).
    #[arg(long, value_name = "5G:SNID", value_parser = ServingNetworkName::parse, requires = "akma")]
    serving_network_name: Option<ServingNetworkName>,
    /// The routing indicator, the first part of the A-KID's username (TS 23.003 §2.2B).
    #[arg(long, value_name = "DIGITS", default_value = "0", value_parser = RoutingIndicator::parse)]
    routing_indicator: RoutingIndicator,
    /// The home network identifier, the A-KID's realm (e.g. 5gc.mnc093.mcc208.3gppnetwork.org).
    #[arg(long, value_name = "REALM", value_parser = Realm::parse, requires = "akma")]
    home_network: Option<Realm>,
    /// The AF's FQDN, the first part of AF_ID (TS 33.535 A.4).
    #[arg(long, value_name = "FQDN", value_parser = Fqdn::parse, requires = "akma")]
    af_fqdn: Option<Fqdn>,
    /// The Ua* security protocol identifier, the second part of AF_ID (TS 33.220 H.3;
    /// default: shared-key DTLS 1.2 with TLS_PSK_WITH_AES_128_CCM_8).
    #[arg(long, value_name = "HEX10", default_value = "010001c0a8", value_parser = hex_array::<5>)]
    ua_protocol: Hex<5>,
}

/// The USIM's inputs: K, OPc, RAND, AUTN.
pub(crate) struct Usim<'a> {
    pub(crate) k: &'a Hex<16>,
    pub(crate) opc: &'a Hex<16>,
    pub(crate) rand: &'a Hex<16>,
    pub(crate) autn: &'a Hex<16>,
}

/// `ue --akma`: 5G AKA, the AKMA keys, and one CoAP GET to the AF over DTLS in the Ua*
/// profile.
pub(crate) async fn run(
    args: &AkmaArgs,
    usim: &Usim<'_>,
    connect: SocketAddr,
    request: &Message,
    timeout: Duration,
) -> Result<(), String> {
    let (Some(supi), Some(snn), Some(home), Some(fqdn)) = (
        &args.supi,
        &args.serving_network_name,
        &args.home_network,
        &args.af_fqdn,
    ) else {
        return Err(
            "--akma needs --supi, --serving-network-name, --home-network, --af-fqdn".into(),
        );
    };
    let k = SubscriberKey::from_array(*usim.k.expose());
    let opc = Opc::from_array(*usim.opc.expose());
    let rand = *usim.rand.expose();
    // The AMF given here is the AuC's for new vectors; the USIM reads AUTN's own.
    let answer = Aka::new(&k, &opc, [0, 0])
        .respond(&rand, usim.autn.expose(), None)
        .map_err(|e| format!("USIM refused the challenge: {e}"))?;
    println!(
        "UE: USIM accepted AUTN (SQN {}), computed RES, CK, IK (MILENAGE)",
        answer.sqn.value()
    );
    let _res_star = answer
        .res_star(snn.as_str(), &rand)
        .map_err(|e| format!("RES*: {e}"))?;
    println!("UE: ME computed RES* for \"{snn}\", the answer to the SEAF (TS 33.501 A.4)");
    let kausf = answer
        .kausf(snn.as_str())
        .map_err(|e| format!("K_AUSF: {e}"))?;
    println!("UE: ME derived K_AUSF = KDF(CK||IK, serving network name, SQN^AK) (TS 33.501 A.2)");
    let anchor = AkmaAnchor::derive(&kausf, supi, &args.routing_indicator, home)
        .map_err(|e| format!("AKMA: {e}"))?;
    println!(
        "UE: ME derived K_AKMA and the A-TID from K_AUSF and {supi} (TS 33.535 A.2, A.3); A-KID {}",
        anchor.a_kid
    );
    let ua = UaProtocolId(*args.ua_protocol.expose());
    let af_id = AfId::new(*fqdn, ua);
    let kaf = kaf(&anchor.kakma, &af_id).map_err(|e| format!("K_AF: {e}"))?;
    println!("UE: ME derived K_AF = KDF(K_AKMA, AF_ID \"{af_id}\") (TS 33.535 A.4)");
    if ua != AKMA_UA_PROTOCOL {
        println!(
            "UE: note: the Ua* protocol id is not {AKMA_UA_PROTOCOL:?}, the one of this DTLS suite"
        );
    }

    let limits = DtlsLimits {
        handshake_timeout: timeout,
        ..DtlsLimits::default()
    };
    let config = UeDtlsConfig::akma(&anchor.a_kid, &kaf, limits).map_err(|e| e.to_string())?;
    println!(
        "UE: ClientHello to {connect}, TLS_PSK_WITH_AES_128_CCM_8; psk_identity \"{}\" (TS 24.109 K.3.2 e)",
        akma_psk_identity(&anchor.a_kid, AkmaIdentityForm::Prefixed)
    );
    let mut ue = DtlsClient::connect(connect, &config)
        .await
        .map_err(handshake_failure)?;
    match ue.psk_identity_hint() {
        Some(AKMA_PSK_IDENTITY_HINT) => {
            println!("UE: the AF's psk_identity_hint is \"3GPP-AKMA\" (TS 24.109 K.3.2 d)")
        }
        Some(other) => println!(
            "UE: note: the AF's psk_identity_hint is {:?}, not \"3GPP-AKMA\"",
            String::from_utf8_lossy(other)
        ),
        None => println!("UE: note: the AF sent no psk_identity_hint (K.3.2 d) asks for one)"),
    }
    println!("UE: handshake complete; DTLS session keys from K_AF");
    println!("UE: CoAP GET /{}", request.uri_path());
    let answer = ue
        .request(request, timeout)
        .await
        .map_err(|e| format!("no answer: {e}"))?;
    println!(
        "UE: CoAP {} \"{}\"",
        answer.code,
        String::from_utf8_lossy(&answer.payload)
    );
    ue.close().await.map_err(|e| e.to_string())?;
    println!("UE: close_notify sent");
    Ok(())
}

/// One line for a failed handshake: the AF's alert and what the UE should do about it.
fn handshake_failure(error: DtlsError) -> String {
    let DtlsError::Alert(alert) = error else {
        return format!("DTLS handshake failed: {error}");
    };
    let advice = match alert {
        AlertDescription::DECRYPT_ERROR | AlertDescription::UNKNOWN_PSK_IDENTITY => {
            "the AF has no K_AF for this A-KID, or another one (its AAnF no longer holds the \
             AKMA context, or the AF_ID differs: run primary authentication again)"
        }
        AlertDescription::HANDSHAKE_FAILURE => {
            "no common cipher suite (this UE offers TLS_PSK_WITH_AES_128_CCM_8 only)"
        }
        AlertDescription::INTERNAL_ERROR => "the AF could not reach its AAnF: try again later",
        _ => "the AF refused the handshake",
    };
    format!("DTLS handshake refused by the AF with the alert {alert}: {advice}")
}
