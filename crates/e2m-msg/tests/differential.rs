//! The tokenizer (`src/lex.rs`) and the decoder's well-formedness checks against an
//! independent, conforming XML parser: libxml2's `xmllint` (namespace-aware), over
//! generated and hostile documents.
//!
//! Every document is a problem document whose extension members (RFC 9457 §3.2: skipped,
//! but read and checked for well-formedness) are generated from a small grammar of XML with
//! faults mixed in: names that are not names or not QNames, unbound or misbound prefixes,
//! attributes without white space between them or twice (by name or by expanded name),
//! `<` and bad references in values and text, `]]>` in text, `--` in comments, mismatched
//! or malformed end tags, trailing content, bad declarations, … Two checks:
//!
//! 1. **Whatever e2m-msg accepts, xmllint accepts as well-formed** (no document that is
//!    not XML ever gets through, even where its content is skipped);
//! 2. **whatever xmllint accepts, e2m-msg accepts too**, when the document stays within
//!    what e2m documents may hold (the generator marks what is outside: CDATA, processing
//!    instructions, a DOCTYPE, XML 1.1, another encoding, more than [`MAX_ATTRIBUTES`]
//!    attributes, deeper than the problem decoder's depth limit).
//!
//! Hostile documents besides: every golden document with random octets flipped, inserted
//! or removed, through every decoder, checked in direction 1.
//!
//! The generator is seeded (splitmix64), so a failure reproduces; `E2M_DIFF_SEED` and
//! `E2M_DIFF_DOCS` change the seed and the count for longer runs by hand. The same
//! comparison runs against quick-xml in the fuzz target `msg_wellformed`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

mod common;

use std::path::PathBuf;
use std::process::Command;

use e2m_msg::{
    IntermediateKeyPush, KeyResponse, MAX_ATTRIBUTES, Notification, Problem, Registration,
    RegistrationResult, Subscription, SubscriptionResult, XmlMessage,
};

/// Documents generated per run (each is also mutated once); CI takes a few seconds.
const DEFAULT_DOCS: usize = 12_000;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability 1/n.
    fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// A generated document and whether it holds something no e2m document may (and which a
/// conforming parser still accepts).
struct Generated {
    text: String,
    outside_subset: bool,
}

/// Element names: good ones, and ones that are not XML names or not QNames.
const GOOD_NAMES: &[&str] = &[
    "a", "b-c", "_d", "e.f", "g1", "été", "h·i", "ΩΩ", "x:j", "y:k",
];
const BAD_NAMES: &[&str] = &[
    "1a",
    "-a",
    ".a",
    "a:b:c",
    ":a",
    "a:",
    "a;b",
    "a\u{37E}",
    "\u{B7}a",
    "z:unbound",
    "a!",
];
/// Attribute values, raw (quoted by the generator): good ones, then bad ones.
const GOOD_VALUES: &[&str] = &[
    "",
    "1",
    "a&amp;b",
    "&lt;&gt;&quot;&apos;",
    "&#x41;&#66;",
    "&#x10FFFF;",
    "tab\there",
    "line\nbreak",
    "&#9;&#xA;",
    "é€😀",
    ">",
];
const BAD_VALUES: &[&str] = &[
    "<",
    "&",
    "&amp",
    "&foo;",
    "&#1;",
    "&#xD800;",
    "&#0;",
    "&#x110000;",
    "&#;",
    "&#x;",
    "&#12a;",
];
/// Character data: good, then bad.
const GOOD_TEXT: &[&str] = &[
    "t",
    " ",
    "a&lt;b",
    "]]",
    "] ]>",
    ">",
    "&#xE000;",
    "x\r\ny",
    "é",
    "&apos;'\"",
];
const BAD_TEXT: &[&str] = &[
    "]]>",
    "&",
    "&bogus;",
    "&#xFFFE;",
    "&#xD7FF0;",
    "a&#8;b",
    "&lt",
];
const GOOD_COMMENTS: &[&str] = &["<!--c-->", "<!---->", "<!-- - -->", "<!--<a>&-->"];
const BAD_COMMENTS: &[&str] = &["<!--a--b-->", "<!--->", "<!---a-->", "<!--a--->", "<!-x-->"];

struct Generator<'r> {
    rng: &'r mut Rng,
    outside: bool,
    /// One fault in this many choices (0: never).
    fault_rate: usize,
}

impl Generator<'_> {
    fn fault(&mut self) -> bool {
        self.fault_rate != 0 && self.rng.one_in(self.fault_rate)
    }

    fn name(&mut self) -> String {
        if self.fault() {
            self.rng.pick(BAD_NAMES).to_owned()
        } else {
            self.rng.pick(GOOD_NAMES).to_owned()
        }
    }

    fn value(&mut self) -> String {
        let raw = if self.fault() {
            self.rng.pick(BAD_VALUES)
        } else {
            self.rng.pick(GOOD_VALUES)
        };
        // Either quote; the other one may appear inside.
        if self.rng.one_in(2) {
            format!("\"{raw}'\"")
        } else if self.fault() {
            format!("'{raw}\"")
        } else {
            format!("'{raw}\"'")
        }
    }

    fn separator(&mut self) -> &'static str {
        if self.fault() {
            ""
        } else {
            self.rng.pick(&[" ", "\n", "\t", "  ", "\r\n"])
        }
    }

    /// `x` and `y` are bound in the root (both to one namespace name, so that `x:a` and
    /// `y:a` on one element collide); a start tag may rebind or misbind them.
    fn attributes(&mut self) -> String {
        let mut out = String::new();
        let count = if self.rng.one_in(60) {
            MAX_ATTRIBUTES + 1 + self.rng.below(3)
        } else {
            self.rng.below(4)
        };
        if count > MAX_ATTRIBUTES {
            self.outside = true;
        }
        let names = [
            "p", "q", "r-s", "x:p", "y:p", "x:q", "z:p", "xml:lang", "xmlns:x", "xmlns:w",
        ];
        for i in 0..count {
            out.push_str(self.separator());
            let name = if count > MAX_ATTRIBUTES {
                format!("n{i}")
            } else if self.fault() {
                match self.rng.below(5) {
                    0 => self.rng.pick(BAD_NAMES).to_owned(),
                    1 => "xmlns:x=\"\" ".to_owned() + "dummy",
                    2 => "xmlns:xml".to_owned(),
                    3 => "xmlns:xmlns".to_owned(),
                    _ => "p".to_owned(), // a likely duplicate
                }
            } else {
                self.rng.pick(&names).to_owned()
            };
            out.push_str(&name);
            let eq = if self.fault() {
                ""
            } else {
                self.rng.pick(&["=", " = ", "\n=\t"])
            };
            out.push_str(eq);
            out.push_str(&self.value());
        }
        out
    }

    fn text(&mut self) -> String {
        if self.fault() {
            self.rng.pick(BAD_TEXT).to_owned()
        } else {
            self.rng.pick(GOOD_TEXT).to_owned()
        }
    }

    fn comment(&mut self) -> String {
        if self.fault() {
            self.rng.pick(BAD_COMMENTS).to_owned()
        } else {
            self.rng.pick(GOOD_COMMENTS).to_owned()
        }
    }

    /// Markup a conforming parser reads and no e2m document may hold.
    fn outside_markup(&mut self) -> String {
        self.outside = true;
        self.rng
            .pick(&["<![CDATA[x]]>", "<![CDATA[]]>", "<?pi data?>", "<?x?>"])
            .to_owned()
    }

    /// An element at `depth` (the problem root is 1; its extension members 2).
    fn element(&mut self, depth: usize, out: &mut String) {
        if depth > 4 {
            self.outside = true;
        }
        let name = self.name();
        out.push('<');
        out.push_str(&name);
        out.push_str(&self.attributes());
        if self.rng.one_in(4) {
            out.push_str(self.rng.pick(&["/>", " />", "\n/>"]));
            return;
        }
        out.push_str(self.rng.pick(&[">", " >", "\t>"]));
        let children = if depth >= 5 { 0 } else { self.rng.below(4) };
        for _ in 0..children {
            match self.rng.below(10) {
                0..=3 => self.element(depth + 1, out),
                4..=6 => out.push_str(&self.text()),
                7 | 8 => out.push_str(&self.comment()),
                _ if self.rng.one_in(4) => out.push_str(&self.outside_markup()),
                _ => out.push_str(&self.text()),
            }
        }
        let end = if self.fault() {
            match self.rng.below(4) {
                0 => format!("</ {name}>"),
                1 => format!("</{name}x>"),
                2 => format!("</{name} a>"),
                _ => String::new(), // unclosed
            }
        } else {
            format!("</{name}{}>", self.rng.pick(&["", " ", "\n"]))
        };
        out.push_str(&end);
    }

    fn document(&mut self) -> String {
        let mut out = String::new();
        match self.rng.below(12) {
            0 => out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"),
            1 => out.push_str("<?xml version='1.0' encoding='utf-8' standalone='yes'?>"),
            2 => out.push_str("<?xml version=\"1.0\"?>"),
            3 if self.fault() => out.push_str(self.rng.pick(&[
                " <?xml version=\"1.0\"?>",
                "<?xml encoding=\"UTF-8\"?>",
                "<?xml?>",
            ])),
            4 if self.rng.one_in(3) => {
                self.outside = true;
                out.push_str(self.rng.pick(&[
                    "<?xml version=\"1.1\"?>",
                    "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>",
                    "<!DOCTYPE problem>",
                ]));
            }
            5 => out.push('\u{FEFF}'),
            _ => {}
        }
        if self.rng.one_in(4) {
            out.push_str(&self.comment());
        }
        out.push_str(
            "<problem xmlns=\"urn:ietf:rfc:7807\" xmlns:x=\"urn:e2m:test\" \
             xmlns:y=\"urn:e2m:test\">",
        );
        let members = 1 + self.rng.below(3);
        let cause_at = self.rng.below(members + 1);
        for i in 0..=members {
            if i == cause_at {
                out.push_str("<cause>malformed</cause>");
            } else {
                self.element(2, &mut out);
            }
            if self.rng.one_in(5) {
                out.push_str(self.rng.pick(&["\n", "<!--m-->", " \t"]));
            }
        }
        out.push_str("</problem>");
        if self.fault() {
            out.push_str(self.rng.pick(&["x", "<problem/>", "&amp;", "<!--a--b-->"]));
        } else if self.rng.one_in(3) {
            out.push_str(self.rng.pick(&["\n", "<!--e-->\n", " "]));
        }
        out
    }
}

fn generate(rng: &mut Rng, fault_rate: usize) -> Generated {
    let mut generator = Generator {
        rng,
        outside: false,
        fault_rate,
    };
    let text = generator.document();
    Generated {
        text,
        outside_subset: generator.outside,
    }
}

/// Whether any decoder accepts `doc`.
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

/// xmllint's well-formedness verdict (namespaces included) on each document, in batches of
/// files. A namespace name that is not a URI is only a warning of libxml2's (Namespaces in
/// XML 1.0 asks for URI references but makes it no well-formedness constraint).
fn xmllint_well_formed(docs: &[&[u8]]) -> Vec<bool> {
    let dir = std::env::temp_dir().join(format!(
        "e2m-msg-diff-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut verdicts = Vec::with_capacity(docs.len());
    for (batch_index, batch) in docs.chunks(2_000).enumerate() {
        let paths: Vec<PathBuf> = batch
            .iter()
            .enumerate()
            .map(|(i, doc)| {
                let path = dir.join(format!("{batch_index:03}-{i:05}.xml"));
                std::fs::write(&path, doc).unwrap();
                path
            })
            .collect();
        let output = Command::new("xmllint")
            .args(["--noout", "--nonet"])
            .args(paths.iter())
            .output()
            .unwrap_or_else(|e| {
                panic!("xmllint is required (apt-get install libxml2-utils; .ci/test does): {e}")
            });
        let stderr = String::from_utf8_lossy(&output.stderr);
        // One report per problem, each starting with the file's path at the start of a
        // line; its message may span lines (a namespace name holding a line break).
        let prefix = format!("{}/", dir.display());
        let mut failed = std::collections::HashSet::new();
        let mut starts: Vec<usize> = stderr
            .match_indices(&prefix)
            .map(|(at, _)| at)
            .filter(|&at| at == 0 || stderr.as_bytes()[at - 1] == b'\n')
            .collect();
        starts.push(stderr.len());
        for pair in starts.windows(2) {
            let report = &stderr[pair[0]..pair[1]];
            if report.contains(" error : ")
                && !report.contains("is not a valid URI")
                && let Some((path, _)) = report.split_once(".xml:")
            {
                failed.insert(format!("{path}.xml"));
            }
        }
        verdicts.extend(
            paths
                .iter()
                .map(|p| !failed.contains(&p.display().to_string())),
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    verdicts
}

/// Mutates one to three octets of `doc` (flip, insert or remove), from a set of octets
/// that matter to XML.
fn mutate(rng: &mut Rng, doc: &[u8]) -> Vec<u8> {
    const OCTETS: &[u8] = b"<>&;/=\"'!?-[]: \t\nax#\x00\xff";
    let mut out = doc.to_vec();
    for _ in 0..=rng.below(3) {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len());
        let octet = OCTETS[rng.below(OCTETS.len())];
        match rng.below(3) {
            0 => out[at] = octet,
            1 => out.insert(at, octet),
            _ => {
                out.remove(at);
            }
        }
    }
    out
}

#[test]
fn e2m_msg_and_xmllint_agree_on_well_formedness() {
    let seed = std::env::var("E2M_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x16_2026);
    let count = std::env::var("E2M_DIFF_DOCS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_DOCS);
    let mut rng = Rng(seed);

    // Generated problem documents: a third without faults, the rest with faults mixed in
    // at various rates.
    let generated: Vec<Generated> = (0..count)
        .map(|i| {
            let fault_rate = [0, 0, 40, 15, 6][i % 5];
            generate(&mut rng, fault_rate)
        })
        .collect();
    // Hostile: golden documents and generated ones, mutated.
    let golden: Vec<String> = common::golden_names()
        .iter()
        .map(|n| common::golden(n))
        .collect();
    let mut hostile: Vec<Vec<u8>> = Vec::new();
    for i in 0..count {
        let base = if i % 2 == 0 {
            golden[i / 2 % golden.len()].as_bytes()
        } else {
            generated[i].text.as_bytes()
        };
        hostile.push(mutate(&mut rng, base));
    }

    let docs: Vec<&[u8]> = generated
        .iter()
        .map(|g| g.text.as_bytes())
        .chain(hostile.iter().map(Vec::as_slice))
        .collect();
    let oracle = xmllint_well_formed(&docs);

    let mut accepted = 0;
    let mut checked_reverse = 0;
    let mut accepted_not_wf = Vec::new();
    let mut wf_refused = Vec::new();
    for (i, doc) in docs.iter().enumerate() {
        let ours = e2m_accepts(doc);
        accepted += usize::from(ours);
        if ours && !oracle[i] {
            accepted_not_wf.push(String::from_utf8_lossy(doc).into_owned());
        }
        if let Some(g) = generated.get(i)
            && oracle[i]
            && !g.outside_subset
        {
            checked_reverse += 1;
            if !ours {
                let error = Problem::decode(doc).err();
                wf_refused.push(format!("{error:?}: {}", g.text));
            }
        }
    }
    println!(
        "differential (seed {seed:#x}): {} documents, {accepted} accepted by e2m-msg, \
         {} well-formed for xmllint, {checked_reverse} well-formed within e2m's subset",
        docs.len(),
        oracle.iter().filter(|v| **v).count(),
    );
    assert!(
        accepted_not_wf.is_empty(),
        "{} documents accepted by e2m-msg are not well-formed for xmllint, e.g.:\n{}",
        accepted_not_wf.len(),
        accepted_not_wf
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    assert!(
        wf_refused.is_empty(),
        "{} well-formed documents within e2m's subset refused, e.g.:\n{}",
        wf_refused.len(),
        wf_refused
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    // The generator must reach both sides of the line, or the test proves nothing.
    assert!(accepted > count / 10, "only {accepted} accepted");
    assert!(
        checked_reverse > count / 10,
        "only {checked_reverse} checked in reverse"
    );
    assert!(
        oracle.iter().filter(|v| !**v).count() > count / 4,
        "too few malformed documents"
    );
}
