//! Command-line handling shared by every example (issue 10: `clap` everywhere; issue 9
//! item 10: strict input, no panic, short one-line errors).
//!
//! Included by each example with `#[path = "support/cli.rs"] mod cli;` (a directory without
//! `main.rs` is not an example target of its own).
//!
//! - [`parse_or_exit`] parses with `clap`; `--help` prints to stdout and exits 0; any bad
//!   input prints **one line** on stderr and exits 2 (clap's usage exit code), whatever went
//!   wrong: unknown flag, missing value, invalid UTF-8, a value our own parsers refuse.
//! - Every error line echoes at most [`ECHO_LIMIT`] characters of what the user typed, so a
//!   64 KiB argument does not come back as a 64 KiB message, and shows control characters
//!   (and Unicode's bidirectional overrides) escaped ([`printable`]), so that a file name
//!   cannot move the cursor, recolour the terminal or forge a second log line.
//! - [`hex_array`] / [`hex_bytes`] are the one hex parser of the examples: `base16ct`'s
//!   strict decoder (the one `e2m-kdf`'s secret types use), digits `0-9a-fA-F` only, exact
//!   length; `+a` is not `0a`.

use std::fmt;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{ArgMatches, CommandFactory, FromArgMatches};
use zeroize::Zeroizing;

/// The most characters of a user's value that an error message repeats.
pub(crate) const ECHO_LIMIT: usize = 24;

/// The longest error line printed (a last guard; messages are built short).
const LINE_LIMIT: usize = 240;

/// Parses the process's arguments into `T`, or exits: 0 after `--help`, 2 with one line on
/// stderr for anything else that is wrong. Also returns the raw matches (for flags whose
/// relative order matters).
pub(crate) fn parse_or_exit<T: CommandFactory + FromArgMatches>(program: &str) -> (T, ArgMatches) {
    let matches = match T::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => exit_with(program, error),
    };
    match T::from_arg_matches(&matches) {
        Ok(parsed) => (parsed, matches),
        Err(error) => exit_with(program, error),
    }
}

/// Exits 2 with `message` as the one line (for input errors found after parsing, e.g. a
/// combination the KDF refuses), formatted like every parse error.
pub(crate) fn usage_error(program: &str, message: impl fmt::Display) -> ! {
    eprintln!(
        "{}",
        clip(&printable(&format!("{program}: {message}")), LINE_LIMIT)
    );
    std::process::exit(2)
}

/// Reports a failure after the arguments were accepted (a peer refused, a file is missing):
/// one clipped line on stderr (a path or URL in the message may be the user's, and long),
/// exit status 1.
pub(crate) fn failure(program: &str, message: impl fmt::Display) -> std::process::ExitCode {
    eprintln!(
        "{}",
        clip(&printable(&format!("{program}: {message}")), LINE_LIMIT)
    );
    std::process::ExitCode::FAILURE
}

/// Prints `error` as clap does for help and version, or as one short line for a real
/// error, and exits.
fn exit_with(program: &str, mut error: clap::Error) -> ! {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => error.exit(),
        // clap would print the whole help on stderr; one line says the same.
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            usage_error(program, "a command is required (see --help)")
        }
        _ => {}
    }
    // Shorten everything the user typed before clap renders it.
    // (An argument's name is usually ours, e.g. `--provision <EMSE_ID,APP_ID,IMSI>`, but an
    // unknown flag is the user's: names get a longer limit than values.)
    for (kind, limit) in [
        (ContextKind::InvalidArg, 2 * ECHO_LIMIT),
        (ContextKind::PriorArg, 2 * ECHO_LIMIT),
        (ContextKind::InvalidValue, ECHO_LIMIT),
        (ContextKind::InvalidSubcommand, ECHO_LIMIT),
        (ContextKind::TrailingArg, ECHO_LIMIT),
    ] {
        if let Some(ContextValue::String(text)) = error.get(kind) {
            let short = clip(text, limit);
            error.insert(kind, ContextValue::String(short));
        }
    }
    let rendered = error.render().to_string();
    // clap's message is the part before the first blank line (then come suggestions and the
    // usage line); join its lines (a list of missing arguments) into one.
    let head = rendered.split("\n\n").next().unwrap_or_default();
    let mut line = head
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(rest) = line.strip_prefix("error: ") {
        line = rest.to_owned();
    }
    eprintln!(
        "{} (see --help)",
        clip(&printable(&format!("{program}: {line}")), LINE_LIMIT)
    );
    std::process::exit(2)
}

/// `text` with every control character (C0, DEL, C1: a line break, an escape sequence)
/// and every Unicode bidirectional control written as a Rust-style escape (`\n`, `\u{1b}`,
/// `\u{202e}`); everything else, non-ASCII letters included, unchanged.
pub(crate) fn printable(text: &str) -> String {
    const BIDI: &[char] = &[
        '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
        '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
    ];
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() || BIDI.contains(&c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// At most `limit` characters of `text`, with `…` when cut (on a character boundary).
pub(crate) fn clip(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Why a hex value was refused. It never contains the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HexError {
    /// Not the expected number of hex digits.
    Length {
        /// Digits expected.
        expected: usize,
        /// Characters given.
        actual: usize,
    },
    /// An odd number of digits (variable-length values).
    Odd,
    /// A character other than `0-9`, `a-f`, `A-F` (a sign, a prefix, white space, …).
    NotHex,
}

impl fmt::Display for HexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HexError::Length { expected, actual } => {
                write!(f, "want {expected} hex digits, got {actual} characters")
            }
            HexError::Odd => f.write_str("want an even number of hex digits"),
            HexError::NotHex => f.write_str("only hex digits 0-9, a-f, A-F are allowed"),
        }
    }
}

impl std::error::Error for HexError {}

/// Exactly `N` octets given as `2N` hex digits. Zeroized on drop, `Debug` shows no octets
/// (some of these are keys); `Clone` only because clap stores parsed values.
#[derive(Clone)]
pub(crate) struct Hex<const N: usize>(Zeroizing<[u8; N]>);

impl<const N: usize> Hex<N> {
    /// The octets.
    pub(crate) fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for Hex<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex<{N}>(<redacted>)")
    }
}

/// Hex of any even length (raw KDF keys and parameters). Zeroized on drop.
#[derive(Clone)]
pub(crate) struct HexBytes(Zeroizing<Vec<u8>>);

impl HexBytes {
    /// The octets.
    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for HexBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HexBytes({} octets, <redacted>)", self.0.len())
    }
}

/// Parses exactly `N` octets of hex (clap value parser).
///
/// # Errors
/// [`HexError`] for a wrong length or any character that is not a hex digit.
pub(crate) fn hex_array<const N: usize>(text: &str) -> Result<Hex<N>, HexError> {
    if text.len() != 2 * N {
        // Report bad characters as such whatever the length; count characters, not octets.
        if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HexError::NotHex);
        }
        return Err(HexError::Length {
            expected: 2 * N,
            actual: text.chars().count(),
        });
    }
    let mut out = Zeroizing::new([0u8; N]);
    base16ct::mixed::decode(text, out.as_mut_slice()).map_err(|_| HexError::NotHex)?;
    Ok(Hex(out))
}

/// Parses hex of any even length (clap value parser).
///
/// # Errors
/// [`HexError`] for an odd length or any character that is not a hex digit.
pub(crate) fn hex_bytes(text: &str) -> Result<HexBytes, HexError> {
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HexError::NotHex);
    }
    if !text.len().is_multiple_of(2) {
        return Err(HexError::Odd);
    }
    let mut out = Zeroizing::new(vec![0u8; text.len() / 2]);
    base16ct::mixed::decode(text, out.as_mut_slice()).map_err(|_| HexError::NotHex)?;
    Ok(HexBytes(out))
}

/// Lower-case hex of `bytes`, for output.
pub(crate) fn to_hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}
