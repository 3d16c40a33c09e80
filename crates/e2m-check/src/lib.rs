#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod callback;
mod emks;
mod emse;
mod kdf;
mod plan;
mod report;
mod select;
mod verdict;
mod wire;
mod xsd;

pub use emks::{EmksTarget, EmseCredentials, emks_checks, run_emks};
pub use emse::{EmseTarget, emse_checks, run_emse};
pub use plan::{DEFAULT_DOMAIN, DEFAULT_IMSI_BASE, SHARED_UES, UePlan};
pub use report::{Report, Summary};
pub use select::{Selection, glob_match};
pub use verdict::{CheckInfo, CheckResult, Verdict};
pub use xsd::XmlLint;

// The crates whose types this crate's signatures expose.
pub use {e2m_https, e2m_kdf, e2m_msg, rustls};

#[cfg(test)]
mod tests {
    /// The README's tables list every check with its clause, what it sends and expects, as
    /// the code describes it (docs stay true).
    #[test]
    fn the_readme_lists_every_check() {
        let readme = include_str!("../README.md");
        for c in crate::emks_checks().iter().chain(&crate::emse_checks()) {
            let row = format!(
                "| `{}` | {} | {} | {} |",
                c.name, c.clause, c.sends, c.expects
            );
            assert!(readme.contains(&row), "README lacks or misstates: {row}");
        }
        let emks = format!("**EMKS checks** ({})", crate::emks_checks().len());
        let emse = format!("**EMSE checks** ({})", crate::emse_checks().len());
        assert!(
            readme.contains(&emks) && readme.contains(&emse),
            "README's counts"
        );
    }
}
