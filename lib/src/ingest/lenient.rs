//! A lenient, zero-copy JSON reader for CloudTrail's drifting schema.
//!
//! CloudTrail records span event versions 1.0 to 1.11 and many producers; a field that is a
//! string in one record can be an object, a number or null in another. The leaves read here
//! accept any JSON value and keep what they can, so a type surprise empties one column
//! instead of rejecting the record. Only malformed JSON is an error.
//!
//! [`Cursor`] is a pull parser over one record, written for the ingest hot path: the caller
//! walks the members it knows and everything else is validated and skipped without being
//! built. Strings are borrowed from the record unless they contain escapes, and a block can
//! be read field by field and kept as raw text in the same pass ([`Cursor::captured`]).
//! It accepts exactly the JSON grammar (RFC 8259) with two leniencies: a repeated member
//! name keeps its last value, and a lone UTF-16 surrogate in a `\u` escape becomes U+FFFD.

use std::borrow::Cow;
use std::fmt;

/// A JSON scalar as text: strings as-is (borrowed when unescaped), numbers as their JSON
/// text and booleans as `true`/`false`; null, objects and arrays become `None`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    pub fn as_str(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

/// A boolean from `true`/`false` or the strings `"true"`/`"false"` (any case), which is how
/// CloudTrail writes `mfaAuthenticated`. Anything else is `None`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Flag(pub Option<bool>);

impl Flag {
    fn of(t: &Text<'_>) -> Flag {
        Flag(t.as_str().and_then(|s| {
            if s.eq_ignore_ascii_case("true") {
                Some(true)
            } else if s.eq_ignore_ascii_case("false") {
                Some(false)
            } else {
                None
            }
        }))
    }
}

/// An object read as `T` when it is an object; any other value is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

impl<T> Obj<T> {
    #[cfg(test)]
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

/// A list from an array; a single non-array value is a one-element list; null is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(Vec::new())
    }
}

/// A string-to-string map (an encryption context). Non-string values keep their JSON text
/// for scalars and become null for objects and arrays; a non-object is `None`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StrMap<'a>(pub Option<Pairs<'a>>);

/// Key/value pairs in document order; a value is None when it was null, an object or an
/// array.
pub type Pairs<'a> = Vec<(Cow<'a, str>, Option<Cow<'a, str>>)>;

/// Why a record is not valid JSON, and where (a byte offset into the record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub offset: usize,
    pub reason: &'static str,
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl std::error::Error for JsonError {}

pub type Result<T> = std::result::Result<T, JsonError>;

/// Nesting deeper than this is an error (serde_json's default limit, too).
const MAX_DEPTH: u32 = 128;

/// A pull parser over one JSON text. See the module docs.
#[derive(Debug)]
pub struct Cursor<'a> {
    text: &'a str,
    pos: usize,
    depth: u32,
}

impl<'a> Cursor<'a> {
    pub fn new(text: &'a str) -> Self {
        Cursor {
            text,
            pos: 0,
            depth: 0,
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn err<T>(&self, reason: &'static str) -> Result<T> {
        Err(JsonError {
            offset: self.pos,
            reason,
        })
    }

    /// The next byte after whitespace, not consumed.
    #[inline(always)]
    fn peek(&mut self) -> Result<u8> {
        // CloudTrail writes compact JSON: the next byte is rarely whitespace, which is all
        // at or below b' '.
        match self.bytes().get(self.pos) {
            Some(&c) if c > b' ' => Ok(c),
            _ => self.peek_past_whitespace(),
        }
    }

    #[cold]
    fn peek_past_whitespace(&mut self) -> Result<u8> {
        let b = self.bytes();
        while let Some(&c) = b.get(self.pos) {
            match c {
                b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                _ => return Ok(c),
            }
        }
        self.err("unexpected end of the record")
    }

    #[inline]
    fn expect(&mut self, want: u8, reason: &'static str) -> Result<()> {
        if self.peek()? == want {
            self.pos += 1;
            Ok(())
        } else {
            self.err(reason)
        }
    }

    /// Ends the text: only whitespace may follow the value read.
    pub fn finish(&mut self) -> Result<()> {
        match self.peek() {
            Ok(_) => self.err("trailing characters after the record"),
            Err(_) => Ok(()),
        }
    }

    /// If the next value is an object, calls `member` with each member name; `member` must
    /// read (or skip) the value. Returns false, having skipped the value, when it is not an
    /// object.
    pub fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, Cow<'a, str>) -> Result<()>,
    ) -> Result<bool> {
        if self.peek()? != b'{' {
            self.skip()?;
            return Ok(false);
        }
        self.enter()?;
        if self.peek()? == b'}' {
            self.leave();
            return Ok(true);
        }
        loop {
            if self.peek()? != b'"' {
                return self.err("expected a member name");
            }
            let key = self.string()?;
            self.expect(b':', "expected ':' after a member name")?;
            member(self, key)?;
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.leave();
                    return Ok(true);
                }
                _ => return self.err("expected ',' or '}' in an object"),
            }
        }
    }

    /// Reads an object as `T` through `member` (see [`Cursor::object`]); any other value is
    /// skipped and gives `Obj(None)`.
    pub fn obj<T: Default>(
        &mut self,
        mut member: impl FnMut(&mut T, &mut Self, Cow<'a, str>) -> Result<()>,
    ) -> Result<Obj<T>> {
        let mut value = T::default();
        let is_object = self.object(|c, key| member(&mut value, c, key))?;
        Ok(Obj(is_object.then_some(value)))
    }

    /// [`Cursor::obj`] into `slot`, in place: a record's larger blocks are not copied out
    /// of a returned value.
    pub fn obj_into<T: Default>(
        &mut self,
        slot: &mut Obj<T>,
        mut member: impl FnMut(&mut T, &mut Self, Cow<'a, str>) -> Result<()>,
    ) -> Result<()> {
        let value = slot.0.insert(T::default());
        if !self.object(|c, key| member(value, c, key))? {
            slot.0 = None;
        }
        Ok(())
    }

    /// If the next value is an object, the [`Text`] of its member `name` (the other members
    /// are validated and skipped); otherwise, or without that member, `Text(None)`.
    pub fn member_text(&mut self, name: &str) -> Result<Text<'a>> {
        let mut out = Text(None);
        self.object(|c, key| {
            if key == name {
                out = c.text()?;
            } else {
                c.skip()?;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Reads an array element by element with `item`; null is an empty list and any other
    /// value is read by `item` as a one-element list.
    pub fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> Result<T>) -> Result<List<T>> {
        match self.peek()? {
            b'[' => {
                self.enter()?;
                let mut out = Vec::new();
                if self.peek()? == b']' {
                    self.leave();
                    return Ok(List(out));
                }
                loop {
                    out.push(item(self)?);
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.leave();
                            return Ok(List(out));
                        }
                        _ => return self.err("expected ',' or ']' in an array"),
                    }
                }
            }
            b'n' => {
                self.literal(b"null")?;
                Ok(List(Vec::new()))
            }
            _ => Ok(List(vec![item(self)?])),
        }
    }

    /// Any value as [`Text`].
    #[inline]
    pub fn text(&mut self) -> Result<Text<'a>> {
        match self.peek()? {
            b'"' => Ok(Text(Some(self.string()?))),
            b't' => {
                self.literal(b"true")?;
                Ok(Text(Some(Cow::Borrowed("true"))))
            }
            b'f' => {
                self.literal(b"false")?;
                Ok(Text(Some(Cow::Borrowed("false"))))
            }
            b'-' | b'0'..=b'9' => Ok(Text(Some(Cow::Borrowed(self.number()?)))),
            _ => {
                self.skip()?;
                Ok(Text(None))
            }
        }
    }

    /// Any value as a [`Flag`].
    pub fn flag(&mut self) -> Result<Flag> {
        Ok(Flag::of(&self.text()?))
    }

    /// An object of scalars as a [`StrMap`]; any other value is `None`.
    pub fn str_map(&mut self) -> Result<StrMap<'a>> {
        let mut pairs = Vec::new();
        let is_object = self.object(|c, key| {
            pairs.push((key, c.text()?.0));
            Ok(())
        })?;
        Ok(StrMap(is_object.then_some(pairs)))
    }

    /// Runs `read` on the next value and also returns that value's exact JSON text.
    pub fn captured<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<(T, &'a str)> {
        self.peek()?;
        let start = self.pos;
        let value = read(self)?;
        let raw = self.text.get(start..self.pos);
        match raw {
            Some(raw) => Ok((value, raw)),
            None => self.err("value does not end on a character boundary"),
        }
    }

    /// Validates and skips one value.
    pub fn skip(&mut self) -> Result<()> {
        match self.peek()? {
            b'"' => self.skip_string(),
            b'{' => self.object(|c, _| c.skip()).map(drop),
            b'[' => self.list(|c| c.skip()).map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            _ => self.err("expected a JSON value"),
        }
    }

    fn enter(&mut self) -> Result<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("nested too deeply");
        }
        self.pos += 1;
        Ok(())
    }

    /// Past the closing bracket of what [`Cursor::enter`] entered.
    fn leave(&mut self) {
        self.pos += 1;
        self.depth -= 1;
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<()> {
        if self.bytes()[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            self.err("invalid literal")
        }
    }

    /// A number, validated against the JSON grammar; returns its text.
    fn number(&mut self) -> Result<&'a str> {
        let b = self.bytes();
        let start = self.pos;
        let mut i = start;
        let digits = |i: &mut usize| {
            let from = *i;
            while b.get(*i).is_some_and(u8::is_ascii_digit) {
                *i += 1;
            }
            *i > from
        };
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                digits(&mut i);
            }
            _ => return self.err("invalid number"),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !digits(&mut i) {
                self.pos = i;
                return self.err("invalid number");
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !digits(&mut i) {
                self.pos = i;
                return self.err("invalid number");
            }
        }
        self.pos = i;
        // All ASCII: the slice is on character boundaries.
        Ok(self.text.get(start..i).unwrap_or_default())
    }

    /// A string at `pos` (which is at its opening quote), borrowed when it has no escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        let at = self.special(start)?;
        if self.bytes()[at] == b'"' {
            self.pos = at + 1;
            return match self.text.get(start..at) {
                Some(s) => Ok(Cow::Borrowed(s)),
                None => self.err("string does not end on a character boundary"),
            };
        }
        let mut out = String::with_capacity(at - start + 16);
        out.push_str(self.text.get(start..at).unwrap_or_default());
        self.pos = at;
        self.unescape_rest(&mut out)?;
        Ok(Cow::Owned(out))
    }

    /// Validates and skips a string at `pos` (at its opening quote).
    fn skip_string(&mut self) -> Result<()> {
        self.pos += 1;
        loop {
            let at = self.special(self.pos)?;
            if self.bytes()[at] == b'"' {
                self.pos = at + 1;
                return Ok(());
            }
            self.pos = at;
            self.escape(&mut |_| {})?;
        }
    }

    /// Continues a string with escapes: `pos` is at a backslash.
    fn unescape_rest(&mut self, out: &mut String) -> Result<()> {
        loop {
            self.escape(&mut |c| out.push(c))?;
            let from = self.pos;
            let at = self.special(from)?;
            out.push_str(self.text.get(from..at).unwrap_or_default());
            if self.bytes()[at] == b'"' {
                self.pos = at + 1;
                return Ok(());
            }
            self.pos = at;
        }
    }

    /// Decodes the escape at `pos` (a backslash), passing the character on.
    fn escape(&mut self, out: &mut dyn FnMut(char)) -> Result<()> {
        let b = self.bytes();
        let c = match b.get(self.pos + 1) {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let hi = self.hex4(self.pos + 2)?;
                self.pos += 6;
                let c = if (0xD800..0xDC00).contains(&hi)
                    && b.get(self.pos) == Some(&b'\\')
                    && b.get(self.pos + 1) == Some(&b'u')
                {
                    let lo = self.hex4(self.pos + 2)?;
                    if (0xDC00..0xE000).contains(&lo) {
                        self.pos += 6;
                        char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                    } else {
                        None // a lone high surrogate; the next escape is read on its own
                    }
                } else {
                    char::from_u32(hi)
                };
                out(c.unwrap_or(char::REPLACEMENT_CHARACTER));
                return Ok(());
            }
            _ => return self.err("invalid escape in a string"),
        };
        self.pos += 2;
        out(c);
        Ok(())
    }

    fn hex4(&self, at: usize) -> Result<u32> {
        let digits = self.bytes().get(at..at + 4);
        let value = digits.and_then(|d| {
            d.iter().try_fold(0u32, |v, &h| {
                char::from(h).to_digit(16).map(|x| (v << 4) | x)
            })
        });
        match value {
            Some(v) => Ok(v),
            None => Err(JsonError {
                offset: at,
                reason: "invalid \\u escape",
            }),
        }
    }

    /// Index of the first `"` or `\` at or after `from`; a control character before it is
    /// an error, as is the end of the text.
    #[inline(always)]
    fn special(&mut self, from: usize) -> Result<usize> {
        let b = self.bytes();
        match find_special(b, from) {
            Some(i) if b[i] >= 0x20 => Ok(i),
            Some(i) => {
                self.pos = i;
                self.err("control character in a string")
            }
            None => {
                self.pos = b.len();
                self.err("unterminated string")
            }
        }
    }
}

/// Index of the first `"`, `\` or control character (< 0x20) at or after `from`: 16 bytes
/// at a time through `wide` (SSE2 on x86_64, NEON on aarch64), then the tail byte by
/// byte. Strings in CloudTrail records are short, so there is no setup to amortize.
#[inline]
fn find_special(buf: &[u8], from: usize) -> Option<usize> {
    use wide::u8x16;
    let (quote, backslash, control) = (u8x16::splat(b'"'), u8x16::splat(b'\\'), u8x16::splat(0x1f));
    let mut i = from;
    while let Some(lane) = buf.get(i..i + 16) {
        let v = u8x16::new(lane.try_into().expect("16 bytes"));
        // Unsigned v <= 0x1f as min(v, 0x1f) == v: SSE2 has no unsigned byte compare.
        let hits = v.simd_eq(quote) | v.simd_eq(backslash) | v.min(control).simd_eq(v);
        let hits = hits.to_bitmask();
        if hits != 0 {
            return Some(i + hits.trailing_zeros() as usize);
        }
        i += 16;
    }
    // The last 15 bytes, one at a time.
    buf.get(i..)?
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|k| i + k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default)]
    struct Probe<'a> {
        t: Text<'a>,
        f: Flag,
        m: StrMap<'a>,
        l: List<Text<'a>>,
        o: Obj<Inner<'a>>,
        raw: Option<&'a str>,
    }
    #[derive(Debug, Default)]
    struct Inner<'a> {
        x: Text<'a>,
    }

    fn read(json: &str) -> Result<Probe<'_>> {
        let mut c = Cursor::new(json);
        let mut p = Probe::default();
        c.object(|c, key| {
            match &*key {
                "t" => p.t = c.text()?,
                "f" => p.f = c.flag()?,
                "m" => p.m = c.str_map()?,
                "l" => p.l = c.list(|c| c.text())?,
                "o" => {
                    let (o, raw) = c.captured(|c| {
                        c.obj(|i: &mut Inner, c, k| {
                            if k == "x" {
                                i.x = c.text()?;
                            } else {
                                c.skip()?;
                            }
                            Ok(())
                        })
                    })?;
                    p.o = o;
                    p.raw = Some(raw);
                }
                _ => c.skip()?,
            }
            Ok(())
        })?;
        c.finish()?;
        Ok(p)
    }

    fn probe(json: &str) -> Probe<'_> {
        read(json).expect(json)
    }

    #[test]
    fn leaves_accept_any_type() {
        assert_eq!(probe(r#"{"t":"a"}"#).t.as_str(), Some("a"));
        assert_eq!(probe(r#"{"t":12}"#).t.as_str(), Some("12"));
        assert_eq!(probe(r#"{"t":-1.5e3}"#).t.as_str(), Some("-1.5e3"));
        assert_eq!(probe(r#"{"t":true}"#).t.as_str(), Some("true"));
        assert_eq!(probe(r#"{"t":{"x":1}}"#).t.as_str(), None);
        assert_eq!(probe(r#"{"t":null}"#).t.as_str(), None);
        assert!(matches!(
            probe(r#"{"t":"plain"}"#).t.0,
            Some(Cow::Borrowed(_))
        ));
        assert_eq!(probe(r#"{"t":"a\"b"}"#).t.as_str(), Some("a\"b"));
        assert_eq!(probe(r#"{"f":"TRUE"}"#).f, Flag(Some(true)));
        assert_eq!(probe(r#"{"f":false}"#).f, Flag(Some(false)));
        assert_eq!(probe(r#"{"f":"maybe"}"#).f, Flag(None));
        assert_eq!(probe(r#"{"o":"str"}"#).o.get().map(|i| i.x.clone()), None);
        assert_eq!(
            probe(r#"{"o":{"x":[1]}}"#)
                .o
                .get()
                .map(|i| i.x.as_str().is_none()),
            Some(true)
        );
        assert_eq!(probe(r#"{"l":"one"}"#).l.0.len(), 1);
        assert_eq!(probe(r#"{"l":["a",2,null]}"#).l.0.len(), 3);
        assert!(probe(r#"{"l":null}"#).l.0.is_empty());
        // A repeated member keeps its last value.
        assert_eq!(probe(r#"{"t":"a","t":"b"}"#).t.as_str(), Some("b"));
    }

    #[test]
    fn maps_keep_order_and_stringify_scalars() {
        let p = probe(r#"{"m":{"b":"1","a":2,"c":{"x":1},"é":"ü"}}"#);
        let m = p.m.0.expect("map");
        let flat: Vec<(&str, Option<&str>)> =
            m.iter().map(|(k, v)| (k.as_ref(), v.as_deref())).collect();
        assert_eq!(
            flat,
            vec![
                ("b", Some("1")),
                ("a", Some("2")),
                ("c", None),
                ("é", Some("ü"))
            ]
        );
        assert!(probe(r#"{"m":"nope"}"#).m.0.is_none());
    }

    #[test]
    fn captured_blocks_are_the_exact_text() {
        let p = probe(r#"{"o": { "y" : [1, {"z": "}"}], "x":"v" } ,"t":1}"#);
        assert_eq!(p.raw, Some(r#"{ "y" : [1, {"z": "}"}], "x":"v" }"#));
        assert_eq!(p.o.get().and_then(|i| i.x.as_str()), Some("v"));
    }

    #[test]
    fn escapes_decode_like_serde_json() {
        for s in [
            r#""plain""#,
            r#""a\"b\\c\/d\b\f\n\r\t""#,
            r#""\u00e9\u2603 \ud83d\ude00 x""#,
            r#""long enough to take the word-at-a-time path \u0041 and then some more""#,
            "\"ünïcödé ☃ in raw UTF-8\"",
        ] {
            let want: String = serde_json::from_str(s).expect(s);
            let got = Cursor::new(s).text().expect(s);
            assert_eq!(got.as_str(), Some(want.as_str()), "{s}");
        }
        // Lone surrogates are replaced, not rejected.
        let got = Cursor::new(r#""a\ud800b\udc00""#).text().expect("lone");
        assert_eq!(got.as_str(), Some("a\u{fffd}b\u{fffd}"));
    }

    #[test]
    fn malformed_json_is_an_error() {
        for bad in [
            r#"{"t": "unterminated}"#,
            r#"{"t":1,}"#,
            r#"{"t" 1}"#,
            r#"{"t":01}"#,
            r#"{"t":1.}"#,
            r#"{"t":-}"#,
            r#"{"t":tru}"#,
            r#"{"t":"\x"}"#,
            r#"{"t":"\u12g4"}"#,
            "{\"t\":\"a\u{1}b\"}",
            r#"{"l":[1,]}"#,
            r#"{"l":[1 2]}"#,
            r#"{"t":1} x"#,
            r#"{"t":1"#,
            r#"{t:1}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
            assert!(
                serde_json::from_str::<serde_json::Value>(bad).is_err(),
                "{bad}"
            );
        }
        let deep = format!("{{\"t\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(
            read(&deep).map(drop).map_err(|e| e.reason),
            Err("nested too deeply")
        );
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[ -~\u{e9}\u{1}\u{1f600}\"\\\\]{0,20}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 32, 5, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z\"\\\\]{0,6}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Valid JSON is accepted and skipped to its end, whatever its shape; and after any
        /// one-byte change, this reader and serde_json agree on whether it is still JSON.
        #[test]
        fn accepts_exactly_what_serde_json_accepts(
            value in arb_json(),
            at in proptest::prelude::any::<proptest::sample::Index>(),
            byte in proptest::sample::select(b"{}[]:,\"\\ \n\t\r0-.eE+tfnulx\x01".to_vec()),
        ) {
            // Compact, as CloudTrail writes, and pretty: whitespace around every token.
            let pretty = serde_json::to_string_pretty(&value).expect("serializes");
            for text in [value.to_string(), pretty] {
                let mut c = Cursor::new(&text);
                proptest::prop_assert!(c.skip().is_ok() && c.finish().is_ok(), "{}", text);
                let mut bytes = text.into_bytes();
                let i = at.index(bytes.len());
                bytes[i] = byte;
                if let Ok(mutated) = String::from_utf8(bytes) {
                    let theirs =
                        serde_json::from_str::<serde::de::IgnoredAny>(&mutated).is_ok();
                    let mut c = Cursor::new(&mutated);
                    let ours = c.skip().and_then(|()| c.finish()).is_ok();
                    proptest::prop_assert_eq!(ours, theirs, "{}", mutated);
                }
            }
        }

        /// Strings decode to what serde_json decodes.
        #[test]
        fn strings_decode_like_serde_json(s in "[ -~\u{e9}\u{1}\u{1f600}\"\\\\]{0,40}") {
            let json = serde_json::to_string(&s).expect("encode");
            let got = Cursor::new(&json).text().map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
            proptest::prop_assert_eq!(got.as_str(), Some(s.as_str()));
        }
    }

    #[test]
    fn special_byte_search_is_exact() {
        // 40 bytes: hits in the 16-byte lanes, in the word step and in the byte tail, from
        // every start offset.
        const LEN: usize = 40;
        for b in 0..=255u8 {
            let special = b == b'"' || b == b'\\' || b < 0x20;
            for at in 0..LEN {
                let mut v = vec![b'a'; LEN];
                v[at] = b;
                for from in [0, 1, 7, at] {
                    let want = (special && from <= at).then_some(at);
                    assert_eq!(find_special(&v, from), want, "byte {b} at {at} from {from}");
                }
                // Every other byte value before the hit is passed over.
                let mut w = vec![b; LEN];
                w[at] = b'"';
                let first = if special { 0 } else { at };
                assert_eq!(find_special(&w, 0), Some(first), "{b} then quote at {at}");
            }
        }
    }
}
