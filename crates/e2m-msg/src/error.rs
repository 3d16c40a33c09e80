//! Why a document was refused.

use crate::values::ValueError;

/// Why bytes are not a valid e2m message. Every malformed or hostile input ends here, never in
/// a panic; no variant carries input text (which could be key material or attacker-chosen).
///
/// Element names in variants are the schema's names (static), or the parent's name for an
/// element the schema does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The document is larger than [`MAX_DOCUMENT_LEN`](crate::MAX_DOCUMENT_LEN); nothing
    /// was parsed.
    #[error("document is {len} octets; at most {max} accepted")]
    TooLarge {
        /// Octets received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Not UTF-8 (the only encoding e2m uses).
    #[error("document is not UTF-8 (at octet {offset})")]
    InvalidUtf8 {
        /// Offset of the first bad octet.
        offset: usize,
    },
    /// A character XML 1.0 forbids (C0 controls other than tab, LF and CR; U+FFFE; U+FFFF),
    /// written directly or as a character reference.
    #[error("character not allowed in XML 1.0 (at octet {offset})")]
    ForbiddenCharacter {
        /// Offset of the character, or of the reference that names it.
        offset: usize,
    },
    /// Not well-formed XML (unclosed or mismatched tags, bad attribute syntax, bad names…).
    #[error("not well-formed XML (near octet {offset})")]
    Syntax {
        /// Where the parser stopped.
        offset: usize,
    },
    /// A document type declaration. DTDs are refused outright: they are how entity
    /// expansion ("billion laughs") and external entity (XXE) attacks start, and no e2m
    /// message needs one.
    #[error("DOCTYPE/DTD not allowed")]
    Doctype,
    /// A processing instruction other than the XML declaration.
    #[error("processing instruction not allowed")]
    ProcessingInstruction,
    /// A CDATA section (e2m values are plain character data; one way to write each).
    #[error("CDATA section not allowed")]
    CData,
    /// An entity reference other than the five predefined ones (`amp lt gt quot apos`) and
    /// character references. Without a DTD nothing else can be defined.
    #[error("undefined entity reference")]
    UndefinedEntity,
    /// The XML declaration is not first, or names a version other than 1.0 or an encoding
    /// other than UTF-8.
    #[error("bad or misplaced XML declaration")]
    BadDeclaration,
    /// A namespace prefix that is not bound, a binding Namespaces in XML 1.0 forbids (an
    /// empty prefix or name, a reserved prefix), or more than 8 declarations in scope (e2m
    /// needs one; the bound keeps resolution allocation-free).
    #[error("namespace prefix not bound or badly bound")]
    Namespace,
    /// No root element.
    #[error("no root element")]
    NoRoot,
    /// The root element is not the expected message.
    #[error("root element is not <{expected}>")]
    WrongRoot {
        /// The message's root element name.
        expected: &'static str,
    },
    /// The root (or a child) is in another namespace than [`NAMESPACE`](crate::NAMESPACE)
    /// (or [`PROBLEM_NAMESPACE`](crate::PROBLEM_NAMESPACE) for problem details).
    #[error("element in the wrong namespace")]
    WrongNamespace,
    /// An attribute other than a namespace declaration (the schema has no attributes).
    #[error("attribute not allowed on <{element}>")]
    UnexpectedAttribute {
        /// The element carrying it.
        element: &'static str,
    },
    /// Non-whitespace text where only elements may appear.
    #[error("text not allowed in <{element}>")]
    UnexpectedText {
        /// The element containing it.
        element: &'static str,
    },
    /// A child element the schema does not define for this message. Unknown elements are
    /// refused, not skipped: the namespace is versioned, so an extension is a new version,
    /// and a key server must not silently drop what a peer meant to say.
    #[error("unknown element in <{parent}>")]
    UnknownElement {
        /// The element containing it.
        parent: &'static str,
    },
    /// An element given twice.
    #[error("<{element}> given twice")]
    DuplicateElement {
        /// The element.
        element: &'static str,
    },
    /// Elements not in schema order.
    #[error("<{element}> out of order")]
    OutOfOrder {
        /// The element found too late.
        element: &'static str,
    },
    /// Both alternatives of a choice (e.g. `appIdentity` and `imsi`).
    #[error("<{element}> conflicts with an alternative already given")]
    ChoiceConflict {
        /// The second alternative found.
        element: &'static str,
    },
    /// A required element is absent.
    #[error("<{element}> is missing")]
    MissingElement {
        /// The element.
        element: &'static str,
    },
    /// Elements nested deeper than the schema allows.
    #[error("nesting deeper than {max} levels")]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// An element with more than [`MAX_ATTRIBUTES`](crate::MAX_ATTRIBUTES) attributes
    /// (namespace declarations included), refused when the next one is reached, so that
    /// no start tag costs more than a bounded amount of work.
    #[error("more than {max} attributes on one element")]
    TooManyAttributes {
        /// The limit.
        max: usize,
    },
    /// A comment or element inside a value (e.g. `<keyId>ae47<!---->bf35</keyId>`), which
    /// would make one value out of several pieces.
    #[error("<{element}> must contain plain text only")]
    SplitValue {
        /// The element.
        element: &'static str,
    },
    /// A value with leading or trailing white space. Identifiers are compared octet for
    /// octet, so `" abc"` is never quietly turned into `"abc"`.
    #[error("<{element}> has surrounding white space")]
    SurroundingWhitespace {
        /// The element.
        element: &'static str,
    },
    /// A value that is not valid for its element.
    #[error("invalid <{element}>: {error}")]
    InvalidValue {
        /// The element.
        element: &'static str,
        /// What is wrong with it.
        error: ValueError,
    },
    /// A problem's `type` or `status` contradicts its `cause`.
    #[error("problem <{element}> contradicts its cause")]
    Inconsistent {
        /// `type` or `status`.
        element: &'static str,
    },
    /// Anything but white space and comments after the root element.
    #[error("content after the root element")]
    TrailingContent,
}
