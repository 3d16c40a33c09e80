//! The reader of the vector files in tests/data: `[name]` starts a case, `key = value` lines
//! follow, `#` starts a comment. One format for every file of this crate.
#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use std::collections::BTreeMap;

pub(crate) struct Case {
    pub(crate) name: String,
    fields: BTreeMap<String, String>,
}

impl Case {
    pub(crate) fn text(&self, key: &str) -> &str {
        self.fields
            .get(key)
            .unwrap_or_else(|| panic!("{}: no field {key}", self.name))
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub(crate) fn bytes(&self, key: &str) -> Vec<u8> {
        hex::decode(self.text(key)).unwrap_or_else(|e| panic!("{}: {key}: {e}", self.name))
    }

    pub(crate) fn opt_bytes(&self, key: &str) -> Option<Vec<u8>> {
        self.get(key).map(|_| self.bytes(key))
    }

    pub(crate) fn flag(&self, key: &str) -> bool {
        match self.text(key) {
            "yes" => true,
            "no" => false,
            other => panic!("{}: {key} = {other}", self.name),
        }
    }

    pub(crate) fn number(&self, key: &str) -> u64 {
        self.text(key).parse().unwrap()
    }
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "[{}]", self.name)?;
        for (k, v) in &self.fields {
            writeln!(f, "{k} = {v}")?;
        }
        Ok(())
    }
}

pub(crate) fn cases(text: &str) -> Vec<Case> {
    let mut out: Vec<Case> = Vec::new();
    for line in text.lines().map(str::trim) {
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
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("bad line {line}"));
        let case = out
            .last_mut()
            .unwrap_or_else(|| panic!("field before a case: {line}"));
        case.fields
            .insert(key.trim().to_owned(), value.trim().to_owned());
    }
    out
}
