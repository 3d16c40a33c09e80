//! The malformed-input suite: well over 10,000 generated documents (every truncation of every
//! golden document, random byte flips, and each attack spliced in at every element boundary),
//! run through every decoder. Requirements: no panic, ever; every document that must be
//! refused gets a typed error; any document that is accepted re-encodes and decodes to the
//! same value. Prints its count and time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

use e2m_msg::{
    DecodeError, IntermediateKeyPush, KeyResponse, MAX_ATTRIBUTES, MAX_DOCUMENT_LEN, Notification,
    Problem, Registration, RegistrationResult, Subscription, SubscriptionResult, XmlMessage,
};

#[derive(Default)]
struct Tally {
    documents: usize,
    decodes: usize,
    accepted: usize,
    panics: usize,
    /// Accepted e2m messages (not problem details, whose decoder skips unknown extensions
    /// that the XSD does not list), for the differential check against xmllint.
    accepted_messages: Vec<(String, String)>,
    /// Accepted problem details, for xmllint's well-formedness check.
    accepted_problems: Vec<String>,
}

/// Decodes with `M`; if accepted, checks encode → decode gives the same value.
fn try_one<M: XmlMessage + PartialEq + core::fmt::Debug>(doc: &[u8]) -> Result<bool, String> {
    match M::decode(doc) {
        Ok(m) => {
            let again = M::decode(m.encode().as_bytes()).map_err(|e| format!("re-decode: {e}"))?;
            if again != m {
                return Err(format!("re-decode differs: {m:?} vs {again:?}"));
            }
            Ok(true)
        }
        Err(e) => {
            // Every error renders (Display must not panic either).
            let _ = e.to_string();
            Ok(false)
        }
    }
}

/// One decoder under test: accepted (and consistent), refused, or an inconsistency.
type Decoder = fn(&[u8]) -> Result<bool, String>;

/// Runs `doc` through every decoder; returns whether any accepted it.
fn all_decoders(doc: &[u8], tally: &mut Tally) -> bool {
    tally.documents += 1;
    let decoders: [Decoder; 8] = [
        try_one::<Registration>,
        try_one::<RegistrationResult>,
        try_one::<KeyResponse>,
        try_one::<Subscription>,
        try_one::<SubscriptionResult>,
        try_one::<Notification>,
        try_one::<IntermediateKeyPush>,
        try_one::<Problem>,
    ];
    let mut accepted = false;
    for decode in decoders {
        tally.decodes += 1;
        match catch_unwind(AssertUnwindSafe(|| decode(doc))) {
            Ok(Ok(true)) => accepted = true,
            Ok(Ok(false)) => {}
            Ok(Err(inconsistency)) => panic!("{inconsistency}\n{}", String::from_utf8_lossy(doc)),
            Err(_) => tally.panics += 1,
        }
    }
    if accepted {
        tally.accepted += 1;
        let text = String::from_utf8_lossy(doc).into_owned();
        if Problem::decode(doc).is_err() {
            tally.accepted_messages.push(("accepted".to_owned(), text));
        } else {
            tally.accepted_problems.push(text);
        }
    }
    accepted
}

/// A small deterministic PRNG (xorshift64*), so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Fragments that must make any document containing them invalid, wherever they land.
const ALWAYS_REFUSED: &[&str] = &[
    "<!DOCTYPE r>",
    "<!DOCTYPE r [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>",
    "<!DOCTYPE r [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;\">]>",
    "<?pi data?>",
    "<?xml-stylesheet href=\"x\"?>",
    "<![CDATA[x]]>",
    "&xxe;",
    "&lol9;",
    "&#0;",
    "&#x1;",
    "&#xFFFE;",
    "&#xD800;",
    "\u{0}",
    "\u{1b}",
    "\u{FFFF}",
    "<",
    "</wrong>",
    "<?xml version=\"1.0\"?>",
    "<a><b><c><d><e/></d></c></b></a>",
    "<u:x/>",
];

/// Fragments that may or may not break a document, depending on where they land.
const MAYBE_REFUSED: &[&str] = &[
    "<!-- comment -->",
    " ",
    "\n",
    "junk",
    "&amp;",
    "&#x41;",
    ">",
    "<x/>",
    "<keyId>00000000</keyId>",
    "<emseId>e</emseId>",
    "<cause>internal</cause>",
    " attr=\"1\"",
    " xmlns=\"urn:other\"",
];

#[test]
fn malformed_input_suite() {
    let started = Instant::now();
    let mut tally = Tally::default();
    let goldens: Vec<String> = common::golden_names()
        .iter()
        .map(|n| common::golden(n))
        .collect();
    assert!(goldens.len() >= 10);

    // 1. Every truncation of every golden document. Only the cuts that keep the whole root
    //    element (dropping the final newline) can be valid.
    for doc in &goldens {
        let bytes = doc.as_bytes();
        let root_end = doc.trim_end().len();
        for cut in 0..bytes.len() {
            let accepted = all_decoders(&bytes[..cut], &mut tally);
            assert_eq!(accepted, cut >= root_end, "truncation at {cut} of\n{doc}");
        }
    }

    // 2. Random byte flips: 1 to 4 random octets replaced by random values (XML-significant
    //    characters favoured), 600 per golden document.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let interesting = b"<>&;/=\"' \n\x00\x80\xff:x#!?[]-";
    for doc in &goldens {
        for _ in 0..600 {
            let mut bytes = doc.as_bytes().to_vec();
            for _ in 0..=rng.below(4) {
                let at = rng.below(bytes.len());
                bytes[at] = if rng.below(2) == 0 {
                    interesting[rng.below(interesting.len())]
                } else {
                    rng.next() as u8
                };
            }
            all_decoders(&bytes, &mut tally);
        }
    }

    // 3. Each attack fragment spliced in at every markup boundary (after each '>' and before
    //    each '<') of every golden document.
    for doc in &goldens {
        let mut points: Vec<usize> = doc
            .match_indices(['<', '>'])
            .map(|(i, c)| if c == ">" { i + 1 } else { i })
            .collect();
        points.dedup();
        for &at in &points {
            for fragment in ALWAYS_REFUSED {
                let spliced = format!("{}{fragment}{}", &doc[..at], &doc[at..]);
                let accepted = all_decoders(spliced.as_bytes(), &mut tally);
                assert!(!accepted, "accepted {fragment:?} at {at}:\n{spliced}");
            }
            for fragment in MAYBE_REFUSED {
                let spliced = format!("{}{fragment}{}", &doc[..at], &doc[at..]);
                all_decoders(spliced.as_bytes(), &mut tally);
            }
        }
        // Inside the root start tag: an attribute, a second default namespace, an unbound
        // prefix, a declaration or an attribute with no white space before it (issue 16),
        // more attributes than the limit.
        let root_tag_end = doc.find("\">").unwrap() + 1;
        let too_many: String = (0..=MAX_ATTRIBUTES)
            .map(|i| format!(" a{i}=\"\""))
            .collect();
        for fragment in [
            " id=\"1\"",
            " xmlns=\"urn:other\"",
            " a:b=\"1\"",
            " xmlns:a=\"\"",
            "xmlns:p=\"urn:p\"",
            "a=\"1\"",
            " xmlns:p=\"urn:p\"xmlns:q=\"urn:q\"",
            &too_many,
        ] {
            let spliced = format!("{}{fragment}{}", &doc[..root_tag_end], &doc[root_tag_end..]);
            assert!(!all_decoders(spliced.as_bytes(), &mut tally), "{spliced}");
        }
    }

    // 4. Whole-document attacks.
    let ns = "urn:e2m:xml:ns:emse-emks:1";
    let mut laughs =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        laughs.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">\n",
            format!(
                "&lol{};",
                if i == 1 {
                    String::new()
                } else {
                    (i - 1).to_string()
                }
            )
            .repeat(10)
        ));
    }
    laughs.push_str(&format!(
        "]>\n<registration xmlns=\"{ns}\"><emseId>&lol9;</emseId></registration>"
    ));
    let attacks: Vec<(Vec<u8>, Option<DecodeError>)> = vec![
        (laughs.into_bytes(), Some(DecodeError::Doctype)),
        (
            format!("<!DOCTYPE r SYSTEM \"http://attacker.example/x.dtd\"><registration xmlns=\"{ns}\"><emseId>e</emseId></registration>").into_bytes(),
            Some(DecodeError::Doctype),
        ),
        (
            format!("<registration xmlns=\"{ns}\">{}", "<a>".repeat(20_000)).into_bytes(),
            Some(DecodeError::UnknownElement { parent: "registration" }),
        ),
        (
            format!("<registration xmlns=\"{ns}\"><emseId>{}", "<a>".repeat(20_000)).into_bytes(),
            Some(DecodeError::TooDeep { max: 2 }),
        ),
        (
            format!("<problem xmlns=\"urn:ietf:rfc:7807\">{}", "<a>".repeat(20_000)).into_bytes(),
            None,
        ),
        (vec![b'<'; MAX_DOCUMENT_LEN + 1], Some(DecodeError::TooLarge { len: MAX_DOCUMENT_LEN + 1, max: MAX_DOCUMENT_LEN })),
        (
            format!("<registration xmlns=\"{ns}\" {}><emseId>e</emseId></registration>", (0..3000).map(|i| format!("xmlns:p{i}=\"u{i}\"")).collect::<Vec<_>>().join(" ")).into_bytes(),
            None,
        ),
        (
            format!("<registration xmlns=\"{ns}\"><emseId>{}</emseId></registration>", "&amp;".repeat(10_000)).into_bytes(),
            None,
        ),
        (b"\xFE\xFF\x00<\x00r".to_vec(), Some(DecodeError::InvalidUtf8 { offset: 0 })),
        (Vec::new(), Some(DecodeError::NoRoot)),
    ];
    for (doc, expected) in &attacks {
        let _ = all_decoders(doc, &mut tally);
        let got = Registration::decode(doc);
        assert!(got.is_err());
        if let (Some(expected), Err(got)) = (expected, &got) {
            if doc.starts_with(b"<problem") {
                continue;
            }
            assert_eq!(got, expected);
        }
    }
    // Issue 16: many attributes cost a bounded amount of work and are refused, on any
    // element; attributes without white space between them are refused where they would
    // otherwise be skipped.
    let attributes: String = (0..6_000).map(|i| format!(" a{i}=\"\"")).collect();
    for doc in [
        format!("<registration xmlns=\"{ns}\"{attributes}><emseId>e</emseId></registration>"),
        format!("<registration xmlns=\"{ns}\"><emseId{attributes}>e</emseId></registration>"),
        format!(
            "<problem xmlns=\"urn:ietf:rfc:7807\"><cause>internal</cause><x{attributes}/></problem>"
        ),
    ] {
        let _ = all_decoders(doc.as_bytes(), &mut tally);
        let expected = Err(DecodeError::TooManyAttributes {
            max: MAX_ATTRIBUTES,
        });
        if doc.starts_with("<problem") {
            assert_eq!(Problem::decode(doc.as_bytes()).map(|_| ()), expected);
        } else {
            assert_eq!(Registration::decode(doc.as_bytes()).map(|_| ()), expected);
        }
    }
    for extension in ["<x a=\"1\"b=\"2\"/>", "<x><y a='1'b='2'/></x>"] {
        let doc = format!(
            "<problem xmlns=\"urn:ietf:rfc:7807\"><cause>internal</cause>{extension}</problem>"
        );
        assert!(!all_decoders(doc.as_bytes(), &mut tally), "{doc}");
        assert!(matches!(
            Problem::decode(doc.as_bytes()),
            Err(DecodeError::Syntax { .. })
        ));
    }
    let deep_problem = format!(
        "<problem xmlns=\"urn:ietf:rfc:7807\">{}",
        "<a>".repeat(20_000)
    );
    assert_eq!(
        Problem::decode(deep_problem.as_bytes()),
        Err(DecodeError::TooDeep { max: 4 })
    );

    let elapsed = started.elapsed();
    println!(
        "malformed-input suite: {} documents, {} decodes, {} accepted, {} panics, {:.2?}",
        tally.documents, tally.decodes, tally.accepted, tally.panics, elapsed
    );
    assert_eq!(tally.panics, 0);
    assert!(
        tally.documents >= 10_000,
        "only {} documents",
        tally.documents
    );

    // Differential check: whatever the strict decoder accepts, the XSD accepts too; and the
    // problem details it accepts (extension members and all) are well-formed for xmllint.
    common::xmllint_validate(&tally.accepted_messages);
    common::xmllint_well_formed(&tally.accepted_problems);
}
