//! Capabilities exchange (RFC 6733 §5.3): building CER/CEA and reading a peer's.

use super::{AdvertisedApplication, NodeConfig, PeerInfo};
use crate::avp::AvpHeader;
use crate::codes::{ApplicationId, AvpCode, CommandCode, ResultCode};
use crate::dictionary::ApplicationKind;
use crate::error::EncodeError;
use crate::header::CommandFlags;
use crate::message::{MessageBuilder, MessageView};

fn m(code: AvpCode) -> AvpHeader {
    AvpHeader::mandatory(code)
}

/// What this node advertises: its applications, or the relay application for a relay.
fn advertised(config: &NodeConfig) -> Vec<AdvertisedApplication> {
    if config.relay {
        vec![AdvertisedApplication::auth(ApplicationId::RELAY)]
    } else {
        config.applications.clone()
    }
}

/// Writes the capabilities common to CER and CEA (§5.3.1, §5.3.2), after Result-Code for a
/// CEA.
fn capabilities(b: &mut MessageBuilder, config: &NodeConfig) {
    b.identity(m(AvpCode::ORIGIN_HOST), &config.origin_host);
    b.identity(m(AvpCode::ORIGIN_REALM), &config.origin_realm);
    for ip in &config.host_ip_addresses {
        b.ip_address(m(AvpCode::HOST_IP_ADDRESS), *ip);
    }
    b.u32(m(AvpCode::VENDOR_ID), config.vendor_id);
    b.utf8(AvpHeader::new(AvpCode::PRODUCT_NAME), &config.product_name);
    b.u32(m(AvpCode::ORIGIN_STATE_ID), config.origin_state_id);
    let mut vendors: Vec<u32> = config.supported_vendor_ids.clone();
    vendors.extend(config.applications.iter().filter_map(|a| a.vendor_id));
    vendors.sort_unstable();
    vendors.dedup();
    for v in vendors.into_iter().filter(|v| *v != 0) {
        b.u32(m(AvpCode::SUPPORTED_VENDOR_ID), v);
    }
    for app in advertised(config) {
        let code = match app.kind {
            ApplicationKind::Auth => AvpCode::AUTH_APPLICATION_ID,
            ApplicationKind::Acct => AvpCode::ACCT_APPLICATION_ID,
        };
        match app.vendor_id {
            None => {
                b.u32(m(code), app.id.0);
            }
            Some(vendor) => {
                b.grouped(m(AvpCode::VENDOR_SPECIFIC_APPLICATION_ID), |g| {
                    g.u32(m(AvpCode::VENDOR_ID), vendor);
                    g.u32(m(code), app.id.0);
                });
            }
        }
    }
    if let Some(rev) = config.firmware_revision {
        b.u32(AvpHeader::new(AvpCode::FIRMWARE_REVISION), rev);
    }
}

/// A CER (§5.3.1) with these ids.
pub(super) fn cer(
    config: &NodeConfig,
    hop_by_hop: u32,
    end_to_end: u32,
) -> Result<Vec<u8>, EncodeError> {
    let mut b = MessageBuilder::request(
        CommandCode::CAPABILITIES_EXCHANGE,
        ApplicationId::COMMON,
        CommandFlags::NONE,
    );
    b.set_ids(hop_by_hop, end_to_end);
    capabilities(&mut b, config);
    b.finish()
}

/// A CEA (§5.3.2) answering `request`: E bit for protocol errors, Failed-AVP and
/// Error-Message when given.
pub(super) fn cea(
    config: &NodeConfig,
    request: &MessageView<'_>,
    result: ResultCode,
    failed_avps: &[u8],
    error_message: Option<&str>,
) -> Result<Vec<u8>, EncodeError> {
    let mut b = MessageBuilder::answer_to(request);
    if result.is_protocol_error() {
        b.set_flags(CommandFlags::ERROR);
    }
    b.u32(m(AvpCode::RESULT_CODE), result.0);
    capabilities(&mut b, config);
    if let Some(text) = error_message {
        b.utf8(AvpHeader::new(AvpCode::ERROR_MESSAGE), text);
    }
    if !failed_avps.is_empty() {
        b.grouped(m(AvpCode::FAILED_AVP), |g| {
            g.extend_encoded(failed_avps);
        });
    }
    b.finish()
}

/// Reads a peer's capabilities from a checked CER or CEA.
pub(super) fn peer_info(msg: &MessageView<'_>) -> PeerInfo {
    let mut info = PeerInfo {
        origin_host: msg.origin_host().unwrap_or_default().to_owned(),
        origin_realm: msg.origin_realm().unwrap_or_default().to_owned(),
        host_ip_addresses: Vec::new(),
        vendor_id: 0,
        product_name: String::new(),
        origin_state_id: None,
        firmware_revision: None,
        supported_vendor_ids: Vec::new(),
        applications: Vec::new(),
        relay: false,
    };
    let add_app = |info: &mut PeerInfo, id: u32| {
        if id == ApplicationId::RELAY.0 {
            info.relay = true;
        } else if !info.applications.contains(&ApplicationId(id)) {
            info.applications.push(ApplicationId(id));
        }
    };
    for avp in msg.avps().map_while(Result::ok) {
        match avp.code() {
            AvpCode::HOST_IP_ADDRESS => {
                if let Some(ip) = avp.address().ok().and_then(|a| a.ip()) {
                    info.host_ip_addresses.push(ip);
                }
            }
            AvpCode::VENDOR_ID => info.vendor_id = avp.u32().unwrap_or(0),
            AvpCode::PRODUCT_NAME => info.product_name = avp.utf8().unwrap_or_default().to_owned(),
            AvpCode::ORIGIN_STATE_ID => info.origin_state_id = avp.u32().ok(),
            AvpCode::FIRMWARE_REVISION => info.firmware_revision = avp.u32().ok(),
            AvpCode::SUPPORTED_VENDOR_ID => {
                if let Ok(v) = avp.u32() {
                    info.supported_vendor_ids.push(v);
                }
            }
            AvpCode::AUTH_APPLICATION_ID | AvpCode::ACCT_APPLICATION_ID => {
                if let Ok(id) = avp.u32() {
                    add_app(&mut info, id);
                }
            }
            AvpCode::VENDOR_SPECIFIC_APPLICATION_ID => {
                // §5.3: the Vendor-Id inside is not used to compute common applications.
                for child in avp.grouped().map_while(Result::ok) {
                    if matches!(
                        child.code(),
                        AvpCode::AUTH_APPLICATION_ID | AvpCode::ACCT_APPLICATION_ID
                    ) && let Ok(id) = child.u32()
                    {
                        add_app(&mut info, id);
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// Whether the two sides have an application in common (§5.3): the intersection of the
/// advertised ids, or always when either side is a relay.
pub(super) fn have_common_application(config: &NodeConfig, peer: &PeerInfo) -> bool {
    config.relay
        || peer.relay
        || config
            .applications
            .iter()
            .any(|a| peer.applications.contains(&a.id))
}
