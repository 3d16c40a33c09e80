//! Which checks run: `--only` and `--skip` by check name, with shell-style globs.

use crate::verdict::CheckInfo;

/// The checks to run: every check whose name matches one of `only` (all when `only` is
/// empty) and none of `skip`. Patterns are globs: `*` matches any run of characters (dots
/// included), `?` one character; anything else matches itself.
///
/// ```
/// use e2m_check::Selection;
/// let selection = Selection::new(vec!["fetch.*".into()], vec!["*.by-imsi".into()]);
/// assert!(selection.admits("fetch.by-app-identity"));
/// assert!(!selection.admits("fetch.by-imsi"));
/// assert!(!selection.admits("register.created"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    only: Vec<String>,
    skip: Vec<String>,
}

impl Selection {
    /// Every check.
    pub fn all() -> Selection {
        Selection::default()
    }

    /// The checks matching `only` (all if empty) and not `skip`.
    pub fn new(only: Vec<String>, skip: Vec<String>) -> Selection {
        Selection { only, skip }
    }

    /// Whether the check named `name` runs.
    pub fn admits(&self, name: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|p| glob_match(p, name)))
            && !self.skip.iter().any(|p| glob_match(p, name))
    }

    /// The patterns that match none of `checks` (most likely typos), to report before
    /// running anything.
    pub fn unmatched<'p>(&'p self, checks: &[CheckInfo]) -> Vec<&'p str> {
        self.only
            .iter()
            .chain(&self.skip)
            .filter(|p| !checks.iter().any(|c| glob_match(p, c.name)))
            .map(String::as_str)
            .collect()
    }
}

/// Whether `name` matches the glob `pattern` (`*` any run, `?` any one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Iterative matcher with one backtrack point (the last `*`): linear in practice.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, n, m) in [
            ("*", "a.b", true),
            ("a.*", "a.b", true),
            ("a.*", "ab", false),
            ("*.b", "a.b", true),
            ("a?b", "a.b", true),
            ("a?b", "a..b", false),
            ("*b*", "abc", true),
            ("a*c*e", "abcde", true),
            ("a*c*e", "abcdf", false),
            ("fetch.by-imsi", "fetch.by-imsi", true),
            ("fetch.by-imsi", "fetch.by-imsi2", false),
            ("", "", true),
            ("", "a", false),
            ("**", "", true),
        ] {
            assert_eq!(glob_match(p, n), m, "{p} vs {n}");
        }
    }

    #[test]
    fn only_and_skip() {
        let s = Selection::new(vec![], vec!["notify.*".into()]);
        assert!(s.admits("fetch.x"));
        assert!(!s.admits("notify.key-available"));
        let s = Selection::new(vec!["a.*".into(), "b.c".into()], vec!["a.x".into()]);
        assert!(s.admits("a.y") && s.admits("b.c"));
        assert!(!s.admits("a.x") && !s.admits("b.d"));
    }
}
