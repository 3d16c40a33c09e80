//! Reader for the `tests/data/*.txt` vector files: `[case]` headers, `key = value` lines,
//! `#` comments. Binary values are hex or `XX*N` (octet XX repeated N times).
#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support"
)]

use std::collections::BTreeMap;

pub(crate) struct Case {
    pub(crate) name: String,
    fields: BTreeMap<String, String>,
}

impl Case {
    pub(crate) fn text(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("case {:?} has no field {key:?}", self.name))
    }

    pub(crate) fn opt_text(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub(crate) fn bytes(&self, key: &str) -> Vec<u8> {
        let value = self.text(key);
        match value.split_once('*') {
            Some((octet, count)) => {
                vec![u8::from_str_radix(octet, 16).unwrap(); count.parse().unwrap()]
            }
            None => hex::decode(value).unwrap(),
        }
    }

    pub(crate) fn array<const N: usize>(&self, key: &str) -> [u8; N] {
        self.bytes(key).try_into().unwrap()
    }
}

pub(crate) fn cases(content: &str) -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    for line in content.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(Case {
                name: name.to_owned(),
                fields: BTreeMap::new(),
            });
            continue;
        }
        let (key, value) = line.split_once('=').expect("key = value");
        out.last_mut()
            .expect("a [case] header first")
            .fields
            .insert(key.trim().to_owned(), value.trim().to_owned());
    }
    assert!(!out.is_empty(), "no cases read");
    out
}

pub(crate) fn case<'a>(all: &'a [Case], name: &str) -> &'a Case {
    all.iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name:?}"))
}
