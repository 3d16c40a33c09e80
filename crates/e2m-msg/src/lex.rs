//! The tokenizer under the strict decoder: it splits a document, already checked to be UTF-8
//! holding XML characters only, into markup and character data, and checks the syntax of
//! each piece of markup as far as it delimits it (XML 1.0 §2.4–§2.8, §3.1, §4.1).
//!
//! What it does not check is the decoder's: names (QNames), attributes (read by
//! `decode::next_attribute`), references in text, `]]>` in text, end tags matching their
//! start tags (the decoder keeps the names of the open elements), and what may appear where.
//! Everything it recognises but no e2m document may hold (a processing instruction, a CDATA
//! section, a DOCTYPE) is reported as such, for the decoder to refuse by name.
//!
//! Hand-written rather than quick-xml's reader for cost: the decoder needs markup split and
//! nothing else, and quick-xml's reader re-validated the UTF-8 of every event and allocated
//! to keep the names of open elements, which alone cost more than the rest of a key
//! response's decode (issue 20 goal 4). Each step is one forward scan: linear in the
//! document.

/// One piece of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// Character data up to the next markup or the end (never empty), references unresolved.
    Text(&'a str),
    /// A start tag, or an empty-element tag (reported as a start tag and then an end tag).
    Start(Tag<'a>),
    /// An end tag's name (white space before its `>` removed).
    End(&'a str),
    /// A comment: `<!--`, no `--`, `-->`.
    Comment,
    /// An XML declaration, whole (`<?xml` … `?>`), at [`Lexer::token_start`].
    Decl(&'a str),
    /// A processing instruction other than the XML declaration.
    Pi,
    /// A CDATA section.
    CData,
    /// A document type declaration (`<!DOCTYPE`, in any case: not read further).
    Doctype,
    /// The end of the document.
    Eof,
}

/// A start tag: the element's name and the rest of the tag, unparsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tag<'a> {
    /// Up to the first white space.
    pub(crate) name: &'a str,
    /// After the name, up to `>` or `/>`: white space and attributes.
    pub(crate) attributes: &'a str,
}

/// Where a document is being split.
pub(crate) struct Lexer<'a> {
    text: &'a str,
    /// Just after the last token.
    pos: usize,
    /// Where the last token (or the markup that failed) began.
    start: usize,
    /// The end tag owed after an empty-element tag.
    pending_end: Option<&'a str>,
}

/// Markup that is not well-formed, or a document that ends inside markup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

impl<'a> Lexer<'a> {
    pub(crate) fn new(text: &'a str) -> Self {
        Lexer {
            text,
            pos: 0,
            start: 0,
            pending_end: None,
        }
    }

    /// The offset just after the last token.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The offset where the last token, or the markup found malformed, begins.
    pub(crate) fn token_start(&self) -> usize {
        self.start
    }

    /// Skips white space up to the next token (where character data that is only white
    /// space would be ignored anyway): one token less to read for each line break between
    /// elements.
    pub(crate) fn skip_space(&mut self) {
        if self.pending_end.is_none() {
            let bytes = self.text.as_bytes();
            while bytes.get(self.pos).copied().is_some_and(is_xml_space) {
                self.pos += 1;
            }
        }
    }

    /// The next token.
    ///
    /// # Errors
    /// [`Malformed`] for markup that is not well-formed or not closed.
    pub(crate) fn next(&mut self) -> Result<Token<'a>, Malformed> {
        if let Some(name) = self.pending_end.take() {
            return Ok(Token::End(name));
        }
        let text = self.text;
        let bytes = text.as_bytes();
        let start = self.pos;
        self.start = start;
        let Some(&first) = bytes.get(start) else {
            return Ok(Token::Eof);
        };
        if first != b'<' {
            let end = find_byte(bytes, start, b'<').unwrap_or(bytes.len());
            self.pos = end;
            return Ok(Token::Text(&text[start..end]));
        }
        match bytes.get(start + 1) {
            Some(b'/') => {
                // ETag ::= '</' Name S? '>' (the name is the decoder's to check).
                let gt = find_byte(bytes, start + 2, b'>').ok_or(Malformed)?;
                self.pos = gt + 1;
                let name = text[start + 2..gt].trim_end_matches([' ', '\t', '\n', '\r']);
                Ok(Token::End(name))
            }
            Some(b'?') => {
                // PI ::= '<?' PITarget (S ...)? '?>'; the target `xml` (and only it, in
                // lowercase, followed by white space or the end) makes the declaration.
                let end = find(text, start + 2, "?>").ok_or(Malformed)?;
                self.pos = end + 2;
                let target = &bytes[start + 2..end];
                let declaration =
                    target.starts_with(b"xml") && target.get(3).is_none_or(|&b| is_xml_space(b));
                Ok(if declaration {
                    Token::Decl(&text[start..end + 2])
                } else {
                    Token::Pi
                })
            }
            Some(b'!') => self.bang(start),
            _ => {
                // STag / EmptyElemTag: up to the first `>` outside a quoted value.
                let gt = find_tag_end(bytes, start + 1).ok_or(Malformed)?;
                self.pos = gt + 1;
                let inner = &text[start + 1..gt];
                let (inner, empty) = match inner.strip_suffix('/') {
                    Some(inner) => (inner, true),
                    None => (inner, false),
                };
                let name_len = inner.bytes().position(is_xml_space).unwrap_or(inner.len());
                let (name, attributes) = inner.split_at(name_len);
                if empty {
                    self.pending_end = Some(name);
                }
                Ok(Token::Start(Tag { name, attributes }))
            }
        }
    }

    /// `<!`: a comment, a CDATA section or a DOCTYPE; anything else is malformed.
    fn bang(&mut self, start: usize) -> Result<Token<'a>, Malformed> {
        let rest = &self.text[start..];
        if rest.starts_with("<!--") {
            // Comment ::= '<!--' ((Char - '-') | ('-' (Char - '-')))* '-->': the first
            // `--` after the opening must be the closing one (so no `--` inside and no
            // `-` before `-->`).
            let dashes = find(self.text, start + 4, "--").ok_or(Malformed)?;
            if self.text.as_bytes().get(dashes + 2) != Some(&b'>') {
                return Err(Malformed);
            }
            self.pos = dashes + 3;
            Ok(Token::Comment)
        } else if rest.starts_with("<![CDATA[") {
            let end = find(self.text, start + 9, "]]>").ok_or(Malformed)?;
            self.pos = end + 3;
            Ok(Token::CData)
        } else if rest
            .get(..9)
            .is_some_and(|head| head.eq_ignore_ascii_case("<!DOCTYPE"))
        {
            // Refused whatever follows (and in whatever case: `<!doctype` is not XML, but
            // it says what it means): not read further.
            self.pos = start + "<!DOCTYPE".len();
            Ok(Token::Doctype)
        } else {
            Err(Malformed)
        }
    }
}

/// XML 1.0 §2.3 S.
pub(crate) fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

/// Eight copies of the octet 1.
const ONES: u64 = u64::from_le_bytes([1; 8]);
/// Eight copies of the octet 0x80.
const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);

/// A word with the high bit set in (at least) the lowest octet of `word` equal to `octet`
/// and in no lower one; zero if there is none (the classic "has zero byte" test on
/// `word ^ octet…octet`: a borrow can only set bits above a true match).
fn matches(word: u64, octet: u8) -> u64 {
    let x = word ^ (ONES * u64::from(octet));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// The index of the first octet of `bytes` at or after `from` that is one of `octets`:
/// eight octets per step (every text and tag is searched once, so this is most of the
/// tokenizer's work), then one at a time.
fn find_any<const N: usize>(bytes: &[u8], from: usize, octets: [u8; N]) -> Option<usize> {
    let hay = bytes.get(from..)?;
    let mut chunks = hay.chunks_exact(8);
    let mut offset = from;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let found = octets.iter().fold(0, |acc, &o| acc | matches(word, o));
        if found != 0 {
            return Some(offset + (found.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|b| octets.contains(b))
        .map(|i| offset + i)
}

/// The index of the first `octet` at or after `from`.
fn find_byte(bytes: &[u8], from: usize, octet: u8) -> Option<usize> {
    find_any(bytes, from, [octet])
}

/// The index of the first `pattern` (ASCII, at least one octet) at or after `from`.
fn find(text: &str, from: usize, pattern: &str) -> Option<usize> {
    let (bytes, pattern) = (text.as_bytes(), pattern.as_bytes());
    let (&first, rest) = pattern.split_first()?;
    let mut at = from;
    loop {
        let i = find_byte(bytes, at, first)?;
        if bytes.get(i + 1..i + 1 + rest.len()) == Some(rest) {
            return Some(i);
        }
        at = i + 1;
    }
}

/// The index of the `>` that ends a start tag whose name begins at `from`: the first one
/// outside a quoted attribute value (a value may hold `>`).
fn find_tag_end(bytes: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let i = find_any(bytes, at, [b'>', b'"', b'\''])?;
        let b = bytes[i];
        if b == b'>' {
            return Some(i);
        }
        at = find_byte(bytes, i + 1, b)? + 1;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "test")]
mod tests {
    use super::{Lexer, Malformed, Tag, Token};

    fn tokens(text: &str) -> Result<Vec<Token<'_>>, Malformed> {
        let mut lexer = Lexer::new(text);
        let mut out = Vec::new();
        loop {
            let token = lexer.next()?;
            out.push(token);
            if token == Token::Eof {
                return Ok(out);
            }
        }
    }

    #[test]
    fn markup_and_text() {
        let doc = "<?xml version=\"1.0\"?>\n<!-- c - d --><a x='>' y=\"'\">t&amp;<b/></a >";
        assert_eq!(
            tokens(doc),
            Ok(vec![
                Token::Decl("<?xml version=\"1.0\"?>"),
                Token::Text("\n"),
                Token::Comment,
                Token::Start(Tag {
                    name: "a",
                    attributes: " x='>' y=\"'\""
                }),
                Token::Text("t&amp;"),
                Token::Start(Tag {
                    name: "b",
                    attributes: ""
                }),
                Token::End("b"),
                Token::End("a"),
                Token::Eof,
            ])
        );
        assert_eq!(
            tokens("<?xml-stylesheet x?><?xml?>").unwrap()[..2],
            [Token::Pi, Token::Decl("<?xml?>")]
        );
        let mut lexer = Lexer::new("<![CDATA[x]]><!DOCTYPE r [<!ENTITY");
        assert_eq!(lexer.next(), Ok(Token::CData));
        assert_eq!(lexer.next(), Ok(Token::Doctype));
        // `<!-->x-->` is a comment whose text is `>x`.
        assert_eq!(tokens("<!-->x-->"), Ok(vec![Token::Comment, Token::Eof]));
    }

    #[test]
    fn searches_agree_with_the_plain_ones() {
        // A deterministic jumble of the octets the tokenizer looks for.
        let mut state = 0x2545_F491u32;
        let mut jumble = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    ['a', '<', '>', '"', '\'', '-', '?', ']', 'é'][(state >> 16) as usize % 9]
                })
                .collect()
        };
        let text = [jumble(150), jumble(40), jumble(40), jumble(100)].join("]]>--?>");
        assert!(["--", "?>", "]]>"].iter().all(|p| text.contains(p)));
        let bytes = text.as_bytes();
        for from in 0..=bytes.len() + 1 {
            for octet in [b'<', b'>', b'"', b'-', b'z', 0xA9] {
                let plain = bytes
                    .get(from..)
                    .and_then(|h| h.iter().position(|&b| b == octet))
                    .map(|i| from + i);
                assert_eq!(
                    super::find_byte(bytes, from, octet),
                    plain,
                    "{from} {octet}"
                );
            }
            if !text.is_char_boundary(from.min(text.len())) {
                continue;
            }
            for pattern in ["--", "?>", "]]>", "z"] {
                let plain = text
                    .get(from..)
                    .and_then(|h| h.find(pattern))
                    .map(|i| from + i);
                assert_eq!(super::find(&text, from, pattern), plain, "{from} {pattern}");
            }
        }
    }

    #[test]
    fn malformed_markup() {
        for bad in [
            "<a",
            "</a",
            "<?pi",
            "<!-- x -- y -->",
            "<!-- x --->",
            "<!-->",
            "<!- x -->",
            "<![CDATA[x]]",
            "<!ELEMENT r>",
            "<a b='>",
            "<!--",
        ] {
            assert_eq!(tokens(bad), Err(Malformed), "{bad}");
        }
    }
}
