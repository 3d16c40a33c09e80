//! e2m-msg's own tokenizer and well-formedness checks against an independent parser,
//! quick-xml's namespace-aware reader (with its checks on, plus the structure it leaves to
//! its user: one root, no text outside it, bound prefixes, no attribute twice by expanded
//! name, no reference but to the five predefined entities, white space before each
//! attribute): **whatever e2m-msg accepts,
//! quick-xml reads without error**. The input is tried as a whole document and as the
//! extension members of a problem document (skipped by the decoder, yet checked), where
//! arbitrary XML reaches the tokenizer. quick-xml is laxer than XML (names, `]]>` in text
//! and the characters a reference names go unchecked), so the other direction is the
//! committed test's, against xmllint (`crates/e2m-msg/tests/differential.rs`).
//! Seed corpus: the golden documents (`fuzz/corpus/msg_wellformed/`).
#![no_main]

use e2m_msg::{
    IntermediateKeyPush, KeyResponse, Notification, Problem, Registration, RegistrationResult,
    Subscription, SubscriptionResult, XmlMessage,
};
use libfuzzer_sys::fuzz_target;
use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

fn e2m_accepts(doc: &[u8]) -> bool {
    fn ok<M: XmlMessage>(doc: &[u8]) -> bool {
        M::decode(doc).is_ok()
    }
    ok::<Problem>(doc)
        || ok::<Registration>(doc)
        || ok::<RegistrationResult>(doc)
        || ok::<KeyResponse>(doc)
        || ok::<Subscription>(doc)
        || ok::<SubscriptionResult>(doc)
        || ok::<Notification>(doc)
        || ok::<IntermediateKeyPush>(doc)
}

/// XML 1.0 §3.1 [40]: white space before every attribute, which quick-xml's attribute
/// iterator does not require (`a="1"b="2"`). `tag`: the start tag without `<` and `>`/`/>`.
fn attributes_separated(tag: &str) -> bool {
    let mut quote = None;
    let mut chars = tag.chars().peekable();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) if c == q => {
                quote = None;
                if chars
                    .peek()
                    .is_some_and(|n| !matches!(n, ' ' | '\t' | '\r' | '\n' | '/'))
                {
                    return false;
                }
            }
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None => {}
        }
    }
    true
}

fn predefined_or_char(name: &str) -> bool {
    matches!(name, "lt" | "gt" | "amp" | "apos" | "quot") || name.starts_with('#')
}

/// quick-xml's verdict, with the structural checks it leaves to its user.
fn quick_xml_reads(doc: &str) -> Result<(), String> {
    let doc = doc.strip_prefix('\u{FEFF}').unwrap_or(doc);
    let mut reader = NsReader::from_str(doc);
    let config = reader.config_mut();
    config.check_comments = true;
    config.check_end_names = true;
    config.allow_unmatched_ends = false;
    config.trim_text(false);
    let mut depth = 0usize;
    let mut roots = 0usize;
    let mut first = true;
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(|e| e.to_string())?;
        if matches!(resolved, ResolveResult::Unknown(_)) {
            return Err("element prefix not bound".into());
        }
        let was_first = first;
        first = false;
        match event {
            Event::Start(ref e) | Event::Empty(ref e) => {
                if depth == 0 {
                    roots += 1;
                    if roots > 1 {
                        return Err("second root".into());
                    }
                }
                if !attributes_separated(e) {
                    return Err("attributes without white space between them".into());
                }
                let mut names = Vec::new();
                for attribute in e.attributes().with_checks(true) {
                    let attribute = attribute.map_err(|e| e.to_string())?;
                    attribute
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| e.to_string())?;
                    let key = attribute.key;
                    if key.as_ref().starts_with("xmlns") {
                        continue;
                    }
                    let (ns, local) = reader.resolver().resolve_attribute(key);
                    let ns = match ns {
                        ResolveResult::Unknown(_) => {
                            return Err("attribute prefix not bound".into());
                        }
                        ResolveResult::Bound(ns) => Some(ns.as_ref().to_owned()),
                        ResolveResult::Unbound => None,
                    };
                    let expanded = (ns, local.as_ref().to_owned());
                    if names.contains(&expanded) {
                        return Err("attribute twice by expanded name".into());
                    }
                    names.push(expanded);
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => depth = depth.checked_sub(1).ok_or("unmatched end")?,
            Event::Text(ref t) => {
                let text: &str = t;
                if depth == 0 && !text.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) {
                    return Err("text outside the root".into());
                }
            }
            Event::GeneralRef(ref r) => {
                if depth == 0 {
                    return Err("reference outside the root".into());
                }
                let name: &str = r;
                if !predefined_or_char(name) {
                    return Err(format!("undefined entity {name}"));
                }
                r.resolve_char_ref().map_err(|e| e.to_string())?;
            }
            Event::CData(_) if depth == 0 => return Err("CDATA outside the root".into()),
            Event::Decl(_) if !was_first => return Err("declaration not first".into()),
            Event::DocType(_) if roots > 0 => return Err("DOCTYPE after the root".into()),
            Event::Eof => {
                return if roots == 1 && depth == 0 {
                    Ok(())
                } else {
                    Err("no root, or not closed".into())
                };
            }
            _ => {}
        }
    }
}

fn compare(doc: &[u8]) {
    if !e2m_accepts(doc) {
        return;
    }
    // The decoder accepted: UTF-8, so this does not fail.
    let Ok(text) = std::str::from_utf8(doc) else {
        panic!("accepted a document that is not UTF-8");
    };
    if let Err(reason) = quick_xml_reads(text) {
        panic!("e2m-msg accepted what quick-xml refuses ({reason}):\n{text}");
    }
}

fuzz_target!(|data: &[u8]| {
    compare(data);
    // The same bytes as the skipped extension members of a problem document.
    let mut wrapped = Vec::with_capacity(data.len() + 96);
    wrapped.extend_from_slice(
        b"<problem xmlns=\"urn:ietf:rfc:7807\" xmlns:x=\"urn:e2m:test\"><cause>malformed</cause>",
    );
    wrapped.extend_from_slice(data);
    wrapped.extend_from_slice(b"</problem>");
    compare(&wrapped);
});
