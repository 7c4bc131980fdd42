//! Streaming CloudTrail reader: bytes in, one record (a JSON object's raw bytes) at a time out.
//!
//! The reader never holds more than one record plus one read chunk in memory, whatever the
//! size of the object. It accepts
//!
//! * the CloudTrail envelope `{"Records":[{...},{...}]}` (other top-level keys are skipped),
//! * a bare JSON array of records `[{...},{...}]`,
//! * NDJSON, or any whitespace-separated sequence of record objects,
//!
//! each optionally gzip-compressed (detected by magic bytes, not by name; multi-member gzip
//! is read to the end).
//!
//! Records are *split*, not parsed: a scanner tracks strings and nesting 64 bytes at a
//! time with vector masks (see `ValueScanner`), so deciding whether a record is worth a
//! full parse costs a scan at a few GB/s, not an allocation.

use std::io::{self, BufRead, Read};

use crate::ingest::gunzip::Gunzip;

/// Bytes read from the source per refill.
const CHUNK: usize = 256 * 1024;
/// A single record larger than this is not a CloudTrail record (CloudTrail truncates request
/// and response blocks at 100 KB); the object is rejected instead of growing without bound.
pub const MAX_RECORD_BYTES: usize = 32 * 1024 * 1024;

/// Why an object could not be read. Offsets are in decompressed bytes.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot decompress/read at byte {offset}: {source}")]
    Io {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("invalid JSON at byte {offset}: {reason}")]
    Json { offset: u64, reason: String },
    #[error("unexpected end of data at byte {offset} {context} (truncated object?)")]
    Truncated { offset: u64, context: &'static str },
    #[error("a record at byte {offset} is larger than {MAX_RECORD_BYTES} bytes")]
    RecordTooLarge { offset: u64 },
    /// The object has neither the gzip magic bytes nor JSON at its start: most likely not
    /// a CloudTrail log at all, whatever its name says.
    #[error("not gzip (no gzip magic bytes) and not JSON: {reason}")]
    NotGzipOrJson { reason: String },
}

impl ReadError {
    /// The error as it reads for an input that was (`gzip`) or was not gzip-compressed.
    /// Input without the gzip magic bytes is read as plain JSON; when it is not JSON from
    /// its first byte either, it is neither (an object whose name most likely claims
    /// `.json.gz`), and the error says so instead of only that the JSON is invalid.
    pub fn for_input(self, gzip: bool) -> ReadError {
        match self {
            ReadError::Json { offset: 0, reason } if !gzip => ReadError::NotGzipOrJson { reason },
            e => e,
        }
    }
}

/// One element of the record stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    /// The raw bytes of a JSON object (a record candidate).
    Object(&'a [u8]),
    /// A value where a record was expected that is not an object (counted as rejected).
    NotAnObject(&'a [u8]),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Between top-level values.
    Top,
    /// Inside the `Records` array of an envelope, or a bare top-level array; `need_sep`
    /// after an element (a ',' or the closing ']' comes next).
    InArray {
        envelope: bool,
        need_sep: bool,
    },
    /// After the `Records` array of an envelope: skip the remaining members up to `}`.
    EnvelopeTail,
    Done,
}

/// An object's bytes as JSON text: gunzipped when they start with the gzip magic bytes,
/// else as they are.
pub struct Decoded {
    inner: Box<dyn Read + Send>,
    gzip: bool,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("gzip", &self.gzip)
            .finish_non_exhaustive()
    }
}

impl Decoded {
    /// Whether the object started with the gzip magic bytes.
    pub fn is_gzip(&self) -> bool {
        self.gzip
    }
}

impl Read for Decoded {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.inner.read(out)
    }
}

/// Wraps a reader, gunzipping it if it starts with the gzip magic bytes. The first two
/// bytes are read into the input's buffer however the source delivers them (a network
/// stream may return one byte at a time), and stay there for the decoder or the caller.
pub fn decompressing<R: Read + Send + 'static>(src: R) -> io::Result<Decoded> {
    // Looked at in the buffer: reading them on their own cost every object a read call.
    let mut input = SpareBufReader::new(src);
    let gzip = input.peek_start(2)? == [0x1f, 0x8b];
    let inner: Box<dyn Read + Send> = if gzip {
        Box::new(Gunzip::new(input))
    } else {
        Box::new(input)
    };
    Ok(Decoded { inner, gzip })
}

/// The buffered input of the gzip decoder, with its buffer taken from (and given back to)
/// the thread's spare buffers. A `BufReader` of the same size allocated and zeroed
/// 256 KiB per object, which for CloudTrail's typical 20 KB objects cost more than reading
/// them (a third of ingest's page faults).
struct SpareBufReader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    filled: usize,
}

impl<R> SpareBufReader<R> {
    fn new(inner: R) -> Self {
        SpareBufReader {
            inner,
            buf: take_spare_buffer(),
            pos: 0,
            filled: 0,
        }
    }
}

impl<R: Read> SpareBufReader<R> {
    /// The first `n` bytes of the input (fewer only where it ends), read into the buffer
    /// and not consumed. Only before anything has been read.
    fn peek_start(&mut self, n: usize) -> io::Result<&[u8]> {
        debug_assert_eq!(self.pos, 0, "peek_start after a read");
        while self.filled < n.min(self.buf.len()) {
            match self.inner.read(&mut self.buf[self.filled..]) {
                Ok(0) => break,
                Ok(k) => self.filled += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(&self.buf[..self.filled.min(n)])
    }
}

impl<R: Read> Read for SpareBufReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        // As `BufReader` does: a large read with nothing buffered bypasses the buffer.
        if self.pos == self.filled && out.len() >= self.buf.len() {
            return self.inner.read(out);
        }
        let avail = self.fill_buf()?;
        let n = avail.len().min(out.len());
        out[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

impl<R: Read> BufRead for SpareBufReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos >= self.filled {
            self.filled = self.inner.read(&mut self.buf)?;
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..self.filled])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.filled);
    }
}

impl<R> Drop for SpareBufReader<R> {
    fn drop(&mut self) {
        give_back_spare_buffer(std::mem::take(&mut self.buf));
    }
}

/// Splits a stream of CloudTrail JSON into records. See the module docs.
#[derive(Debug)]
pub struct RecordReader<R> {
    src: R,
    buf: Vec<u8>,
    /// Bytes before `start` may be discarded on refill; `pos` is the parse position and
    /// `buf[..end]` is filled.
    start: usize,
    pos: usize,
    end: usize,
    /// While set, bytes from here on must survive a refill (an object being peeked at).
    keep: Option<usize>,
    /// Decompressed bytes consumed before `buf[0]`.
    base: u64,
    eof: bool,
    mode: Mode,
}

/// Result of trying to find the end of a value in the buffered bytes.
enum Scan {
    /// The value ends before this index (exclusive).
    Complete(usize),
    /// More input is needed.
    NeedMore,
}

thread_local! {
    /// Read buffers of finished readers, reused by the next reader on the thread: a fresh
    /// zeroed 256 KiB buffer per object costs more than a small object's records.
    static SPARE_BUFFERS: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Buffers kept per thread for reuse: an object in flight holds two (the gzip input's and
/// the record reader's).
const SPARE_BUFFERS_KEPT: usize = 2;

/// A `CHUNK`-sized buffer, from the thread's spares when there is one.
fn take_spare_buffer() -> Vec<u8> {
    SPARE_BUFFERS
        .with(|s| s.borrow_mut().pop())
        .unwrap_or_else(|| vec![0; CHUNK])
}

/// Keeps `buf` for the next reader on this thread. Only buffers of the standard size go
/// back: one grown for a huge record is freed.
fn give_back_spare_buffer(buf: Vec<u8>) {
    if buf.len() != CHUNK {
        return;
    }
    // `try_with`: a reader dropped while the thread exits has nowhere to return to.
    let _ = SPARE_BUFFERS.try_with(|s| {
        let mut spare = s.borrow_mut();
        if spare.len() < SPARE_BUFFERS_KEPT {
            spare.push(buf);
        }
    });
}

impl<R> Drop for RecordReader<R> {
    fn drop(&mut self) {
        give_back_spare_buffer(std::mem::take(&mut self.buf));
    }
}

impl<R: Read> RecordReader<R> {
    pub fn new(src: R) -> Self {
        RecordReader {
            src,
            buf: take_spare_buffer(),
            start: 0,
            pos: 0,
            end: 0,
            keep: None,
            base: 0,
            eof: false,
            mode: Mode::Top,
        }
    }

    /// The source, to read what follows the last record.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.src
    }

    /// Reads the source to its end through this reader's buffer, discarding what it reads
    /// (what follows the last record, which the source may still have to hash). The
    /// reader yields nothing after this. `io::copy` zeroed an 8 KiB buffer per object for
    /// these few bytes: 7,400 instructions an object.
    pub fn drain(&mut self) -> io::Result<()> {
        self.mode = Mode::Done;
        self.base += self.end as u64;
        (self.start, self.pos, self.end, self.keep) = (0, 0, 0, None);
        loop {
            match self.src.read(&mut self.buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.base += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Decompressed bytes consumed so far (the position of the parser).
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Reads more input, keeping `buf[start..end]` (and `keep..`). Returns false at end of
    /// input. Indices into the buffer shift by the discarded prefix; callers re-derive them
    /// from `start`, `pos` and `keep`.
    fn fill(&mut self) -> Result<bool, ReadError> {
        if self.eof {
            return Ok(false);
        }
        let from = self.keep.map_or(self.start, |k| k.min(self.start));
        if from > 0 {
            self.buf.copy_within(from..self.end, 0);
            self.base += from as u64;
            self.start -= from;
            self.pos -= from;
            self.end -= from;
            if let Some(k) = self.keep.as_mut() {
                *k -= from;
            }
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_RECORD_BYTES {
                return Err(ReadError::RecordTooLarge { offset: self.base });
            }
            let grown = (self.buf.len() * 2).min(MAX_RECORD_BYTES);
            self.buf.resize(grown, 0);
        }
        loop {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ReadError::Io {
                        offset: self.base + self.end as u64,
                        source,
                    });
                }
            }
        }
    }

    fn json_err(&self, reason: impl Into<String>) -> ReadError {
        ReadError::Json {
            offset: self.offset(),
            reason: reason.into(),
        }
    }

    /// Skips whitespace (and a UTF-8 BOM at the very start); returns the next byte without
    /// consuming it, or None at end of input.
    fn peek_non_ws(&mut self) -> Result<Option<u8>, ReadError> {
        loop {
            while self.pos < self.end {
                let b = self.buf[self.pos];
                match b {
                    b' ' | b'\n' | b'\r' | b'\t' => self.pos += 1,
                    0xEF if self.offset() == 0 => {
                        if self.end - self.pos < 3 && !self.eof {
                            break; // need the whole BOM
                        }
                        if self.buf[self.pos..self.end].starts_with(&[0xEF, 0xBB, 0xBF]) {
                            self.pos += 3;
                        } else {
                            return Ok(Some(b));
                        }
                    }
                    _ => return Ok(Some(b)),
                }
            }
            self.start = self.pos;
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    fn expect_more(&mut self, context: &'static str) -> Result<u8, ReadError> {
        match self.peek_non_ws()? {
            Some(b) => Ok(b),
            None => Err(ReadError::Truncated {
                offset: self.offset(),
                context,
            }),
        }
    }

    /// Finds the end of the JSON value starting at `self.pos`, reading more input as
    /// needed. On success the value is `buf[self.start..end]`. The value's internal
    /// validity is not checked beyond strings and nesting: records are validated by the
    /// full parse that only KMS candidates get.
    fn scan_value(&mut self, context: &'static str) -> Result<usize, ReadError> {
        self.start = self.pos;
        let mut state = ValueScanner::new(self.buf[self.pos]);
        let mut from = self.pos;
        loop {
            match state.scan(&self.buf[..self.end], from) {
                Scan::Complete(e) => return Ok(e),
                Scan::NeedMore => {
                    let scanned = state.resume_at - self.start;
                    if !self.fill()? {
                        if let Some(e) = state.finish_at_eof(self.end) {
                            return Ok(e); // a scalar ending at end of input
                        }
                        return Err(ReadError::Truncated {
                            offset: self.base + self.end as u64,
                            context,
                        });
                    }
                    from = self.start + scanned;
                }
            }
        }
    }

    /// Reads the next record, or None when the input is exhausted.
    pub fn next_item(&mut self) -> Result<Option<Item<'_>>, ReadError> {
        loop {
            match self.mode {
                Mode::Done => return Ok(None),
                Mode::Top => {
                    let Some(b) = self.peek_non_ws()? else {
                        self.mode = Mode::Done;
                        return Ok(None);
                    };
                    match b {
                        b'[' => {
                            self.pos += 1;
                            self.open_array(false)?;
                        }
                        b'{' => {
                            if self.enter_envelope()? {
                                continue;
                            }
                            // Not an envelope: a top-level record object (NDJSON).
                            let e = self.scan_value("inside a record")?;
                            self.pos = e;
                            return Ok(Some(Item::Object(&self.buf[self.start..e])));
                        }
                        _ => {
                            return Err(self.json_err(format!(
                                "expected '{{' or '[' at the top level, found {}",
                                show_byte(b)
                            )));
                        }
                    }
                }
                Mode::InArray {
                    envelope,
                    need_sep: true,
                } => match self.expect_more("inside the Records array")? {
                    b',' => {
                        self.pos += 1;
                        self.mode = Mode::InArray {
                            envelope,
                            need_sep: false,
                        };
                    }
                    b']' => {
                        self.pos += 1;
                        self.mode = if envelope {
                            Mode::EnvelopeTail
                        } else {
                            Mode::Top
                        };
                    }
                    other => {
                        return Err(self.json_err(format!(
                            "expected ',' or ']' after a record, found {}",
                            show_byte(other)
                        )));
                    }
                },
                Mode::InArray {
                    envelope,
                    need_sep: false,
                } => {
                    let b = self.expect_more("inside the Records array")?;
                    if matches!(b, b']' | b',' | b'}' | b':') {
                        return Err(
                            self.json_err(format!("expected a record, found {}", show_byte(b)))
                        );
                    }
                    let e = self.scan_value("inside a record")?;
                    self.pos = e;
                    self.mode = Mode::InArray {
                        envelope,
                        need_sep: true,
                    };
                    let bytes = &self.buf[self.start..e];
                    return Ok(Some(if b == b'{' {
                        Item::Object(bytes)
                    } else {
                        Item::NotAnObject(bytes)
                    }));
                }
                Mode::EnvelopeTail => match self.expect_more("after the Records array")? {
                    b',' => {
                        self.pos += 1;
                        self.skip_member()?;
                    }
                    b'}' => {
                        self.pos += 1;
                        self.mode = Mode::Top;
                    }
                    other => {
                        return Err(self.json_err(format!(
                            "expected ',' or '}}' in the envelope, found {}",
                            show_byte(other)
                        )));
                    }
                },
            }
        }
    }

    /// After '[' (consumed): enters the array, or leaves it at once if it is empty.
    fn open_array(&mut self, envelope: bool) -> Result<(), ReadError> {
        let context = "inside the Records array";
        if self.expect_more(context)? == b']' {
            self.pos += 1;
            self.mode = if envelope {
                Mode::EnvelopeTail
            } else {
                Mode::Top
            };
        } else {
            self.mode = Mode::InArray {
                envelope,
                need_sep: false,
            };
        }
        Ok(())
    }

    /// At a top-level '{'. If its first member is `"Records"` (an envelope) or it is `{}`,
    /// consumes up to the first record and returns true. Otherwise returns false with `pos`
    /// back at the '{': the object is itself a record.
    fn enter_envelope(&mut self) -> Result<bool, ReadError> {
        self.keep = Some(self.pos);
        let result = self.peek_first_key();
        let open = self.keep.take().unwrap_or(self.pos);
        match result? {
            FirstKey::Empty => Ok(true),
            FirstKey::Records => {
                if self.expect_more("in the envelope")? != b':' {
                    return Err(self.json_err("expected ':' after \"Records\""));
                }
                self.pos += 1;
                let v = self.expect_more("in the envelope")?;
                if v != b'[' {
                    return Err(self.json_err(format!(
                        "\"Records\" must be an array, found {}",
                        show_byte(v)
                    )));
                }
                self.pos += 1;
                self.open_array(true)?;
                Ok(true)
            }
            FirstKey::Other => {
                self.pos = open;
                Ok(false)
            }
        }
    }

    fn peek_first_key(&mut self) -> Result<FirstKey, ReadError> {
        self.pos += 1; // '{'
        match self.expect_more("in the envelope")? {
            b'}' => {
                self.pos += 1;
                return Ok(FirstKey::Empty);
            }
            b'"' => {}
            b => {
                return Err(self.json_err(format!(
                    "expected a member name after '{{', found {}",
                    show_byte(b)
                )));
            }
        }
        const RECORDS: &[u8] = b"\"Records\"";
        while self.end - self.pos < RECORDS.len() {
            self.start = self.pos;
            if !self.fill()? {
                break;
            }
        }
        if self.buf[self.pos..self.end].starts_with(RECORDS) {
            self.pos += RECORDS.len();
            Ok(FirstKey::Records)
        } else {
            Ok(FirstKey::Other)
        }
    }

    /// Skips `"key": value` in the envelope tail.
    fn skip_member(&mut self) -> Result<(), ReadError> {
        if self.expect_more("in the envelope")? != b'"' {
            return Err(self.json_err("expected a member name in the envelope"));
        }
        self.pos = self.scan_value("in the envelope")?;
        if self.expect_more("in the envelope")? != b':' {
            return Err(self.json_err("expected ':' in the envelope"));
        }
        self.pos += 1;
        self.expect_more("in the envelope")?;
        self.pos = self.scan_value("in the envelope")?;
        Ok(())
    }
}

enum FirstKey {
    Empty,
    Records,
    Other,
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}

/// Resumable scanner for the extent of one JSON value.
///
/// Inside objects and arrays it works on 64-byte blocks, simdjson style: bit masks of the
/// quotes, backslashes and brackets of a block, the escaped bytes from the backslash runs,
/// the bytes inside strings from a prefix XOR of the unescaped quotes, and then only the
/// brackets outside strings are looked at, one by one only in a block where the depth may
/// reach zero. Everywhere else (a value's first byte, a scalar, the last bytes before a
/// refill) it steps byte by byte with the same state, so where a value ends never depends
/// on how the input was chunked.
struct ValueScanner {
    depth: u32,
    in_string: bool,
    /// The next byte is escaped (the previous one was an escaping backslash).
    escaped_next: bool,
    kind: u8,
    /// Where to continue scanning after a refill (absolute index into the buffer).
    resume_at: usize,
}

/// Bytes per block of the block scanner.
const BLOCK: usize = 64;

impl ValueScanner {
    fn new(first: u8) -> Self {
        ValueScanner {
            depth: 0,
            in_string: false,
            escaped_next: false,
            kind: first,
            resume_at: 0,
        }
    }

    fn scan(&mut self, buf: &[u8], from: usize) -> Scan {
        match self.kind {
            b'{' | b'[' | b'"' => self.scan_nested(buf, from),
            _ => {
                // Scalar: ends at a delimiter.
                let mut i = from;
                while i < buf.len() {
                    match buf[i] {
                        b',' | b']' | b'}' | b' ' | b'\n' | b'\r' | b'\t' => {
                            return Scan::Complete(i);
                        }
                        _ => i += 1,
                    }
                }
                self.resume_at = i;
                Scan::NeedMore
            }
        }
    }

    fn finish_at_eof(&self, end: usize) -> Option<usize> {
        match self.kind {
            b'{' | b'[' | b'"' => None,
            _ => Some(end),
        }
    }

    fn scan_nested(&mut self, buf: &[u8], from: usize) -> Scan {
        let mut i = from;
        loop {
            while self.depth > 0 && i + BLOCK <= buf.len() {
                let block: &[u8; BLOCK] = buf[i..i + BLOCK].try_into().expect("64 bytes");
                if let Some(at) = self.scan_block(block) {
                    return Scan::Complete(i + at);
                }
                i += BLOCK;
            }
            // Byte steps: one byte at depth 0 (a value's first), else up to the next block.
            let limit = if self.depth == 0 { i + 1 } else { i + BLOCK }.min(buf.len());
            if i >= limit {
                self.resume_at = buf.len();
                return Scan::NeedMore;
            }
            while i < limit {
                let b = buf[i];
                i += 1;
                if self.escaped_next {
                    self.escaped_next = false;
                    continue;
                }
                match b {
                    b'\\' => self.escaped_next = true,
                    b'"' => {
                        self.in_string = !self.in_string;
                        if !self.in_string && self.depth == 0 {
                            return Scan::Complete(i); // a top-level string
                        }
                    }
                    _ if self.in_string => {}
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth = self.depth.saturating_sub(1);
                        if self.depth == 0 {
                            return Scan::Complete(i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// Advances over one block inside an object or array; returns the offset just past
    /// the bracket that closes the value if it is in this block.
    #[inline]
    fn scan_block(&mut self, block: &[u8; BLOCK]) -> Option<usize> {
        let m = BlockMasks::of(block);
        let escaped = self.escaped(m.backslash);
        let quotes = m.quote & !escaped;
        // Bit set for the bytes inside a string, its opening quote included.
        let inside = prefix_xor(quotes) ^ 0u64.wrapping_sub(u64::from(self.in_string));
        self.in_string = inside >> 63 == 1;
        let opens = m.open & !inside & !escaped;
        let closes = m.close & !inside & !escaped;
        if closes == 0 {
            // Most blocks of a record hold only strings, colons and commas. Without
            // `popcnt` in the baseline x86_64 target a count is some twenty instructions,
            // so the common case skips the counting.
            if opens != 0 {
                self.depth += opens.count_ones();
            }
            return None;
        }
        let n_close = closes.count_ones();
        if self.depth > n_close {
            // The depth cannot reach zero in this block.
            self.depth = self.depth + opens.count_ones() - n_close;
            return None;
        }
        let mut brackets = opens | closes;
        while brackets != 0 {
            let at = brackets.trailing_zeros();
            brackets &= brackets - 1;
            if opens >> at & 1 == 1 {
                self.depth += 1;
            } else {
                self.depth -= 1;
                if self.depth == 0 {
                    // The value ends here; the state after it is never used.
                    return Some(at as usize + 1);
                }
            }
        }
        None
    }

    /// The bytes of a block escaped by a backslash (simdjson's branchless escape scan):
    /// in a run of backslashes every other one escapes the byte after it, and a run may
    /// continue from the previous block.
    #[inline]
    fn escaped(&mut self, backslash: u64) -> u64 {
        const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;
        let carry = u64::from(self.escaped_next);
        if backslash == 0 {
            self.escaped_next = false;
            return carry;
        }
        let potential = backslash & !carry;
        // 1 on the byte after an escaping backslash (and on some backslashes, fixed below).
        let codes = (((potential << 1) | ODD).wrapping_sub(potential)) ^ ODD;
        let escaped = codes ^ (backslash | carry);
        let escapes = codes & backslash;
        self.escaped_next = escapes >> 63 == 1;
        escaped
    }
}

/// One bit per byte of a block for each byte class the scanner needs.
struct BlockMasks {
    quote: u64,
    backslash: u64,
    /// `{` or `[`.
    open: u64,
    /// `}` or `]`.
    close: u64,
}

impl BlockMasks {
    /// Vector compares and mask moves, 16 bytes at a time, through `wide` (SSE2 on
    /// x86_64, NEON on aarch64, plain code elsewhere), without unsafe code here.
    #[inline(always)]
    fn of(block: &[u8; BLOCK]) -> Self {
        use wide::u8x16;
        let (mut quote, mut backslash, mut open, mut close) = (0u64, 0u64, 0u64, 0u64);
        let (q, bs, o, c) = (
            u8x16::splat(b'"'),
            u8x16::splat(b'\\'),
            u8x16::splat(b'{'),
            u8x16::splat(b'}'),
        );
        // `[` and `{` differ only in bit 0x20, as do `]` and `}`.
        let case = u8x16::splat(0x20);
        for (k, lane) in block.chunks_exact(16).enumerate() {
            let v = u8x16::new(lane.try_into().expect("16 bytes"));
            let folded = v | case;
            let shift = 16 * k;
            quote |= u64::from(v.simd_eq(q).to_bitmask()) << shift;
            backslash |= u64::from(v.simd_eq(bs).to_bitmask()) << shift;
            open |= u64::from(folded.simd_eq(o).to_bitmask()) << shift;
            close |= u64::from(folded.simd_eq(c).to_bitmask()) << shift;
        }
        BlockMasks {
            quote,
            backslash,
            open,
            close,
        }
    }
}

/// Bit i of the result is the XOR of bits 0..=i of `x`.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

/// A test source that hands out its bytes at most `.1` at a time.
#[cfg(test)]
pub(crate) struct Chunked<'a>(pub &'a [u8], pub usize);

#[cfg(test)]
impl Read for Chunked<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(self.1).min(out.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The extent of the value at the start of `buf` by single byte steps: the reference
    /// the block scanner must agree with.
    fn reference_end(buf: &[u8]) -> Option<usize> {
        let (mut depth, mut in_string, mut escaped) = (0u32, false, false);
        for (i, &b) in buf.iter().enumerate() {
            if escaped {
                escaped = false;
                continue;
            }
            match b {
                b'\\' => escaped = true,
                b'"' => in_string = !in_string,
                _ if in_string => {}
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        None
    }

    fn block_scan_end(buf: &[u8], chunk: usize) -> Option<usize> {
        let mut s = ValueScanner::new(buf[0]);
        let mut from = 0;
        let mut end = chunk.min(buf.len());
        loop {
            match s.scan(&buf[..end], from) {
                Scan::Complete(e) => return Some(e),
                Scan::NeedMore if end == buf.len() => return None,
                Scan::NeedMore => {
                    from = s.resume_at;
                    end = (end + chunk).min(buf.len());
                }
            }
        }
    }

    proptest::proptest! {
        /// Escape runs, quotes and brackets at every offset of a block, also across block
        /// and refill boundaries, end a value exactly where byte steps say it ends.
        #[test]
        fn block_scanner_agrees_with_byte_steps(
            body in proptest::collection::vec(
                proptest::sample::select(b"\"\\{}[]a,:".to_vec()), 0..400),
            opener in proptest::sample::select(b"{[".to_vec()),
            chunk in 1usize..200,
        ) {
            let mut buf = vec![opener];
            buf.extend_from_slice(&body);
            let want = reference_end(&buf);
            proptest::prop_assert_eq!(block_scan_end(&buf, buf.len()), want);
            proptest::prop_assert_eq!(block_scan_end(&buf, chunk), want);
        }
    }

    #[test]
    fn block_scanner_on_long_strings_and_escapes() {
        let mut rec = String::from("{\"a\":\"");
        for i in 0..300 {
            rec.push_str(["x", "\\\"", "\\\\", "}", "]", "{"][i % 6]);
        }
        rec.push_str("\",\"b\":[[{}]],\"c\":\"\\\\\"}");
        let buf = format!("{rec} tail");
        assert_eq!(reference_end(buf.as_bytes()), Some(rec.len()));
        for chunk in [1, 7, 63, 64, 65, 200, buf.len()] {
            assert_eq!(
                block_scan_end(buf.as_bytes(), chunk),
                Some(rec.len()),
                "{chunk}"
            );
        }
    }

    fn collect(input: &[u8], chunk: usize) -> Result<Vec<String>, ReadError> {
        let mut r = RecordReader::new(Chunked(input, chunk));
        let mut out = Vec::new();
        while let Some(item) = r.next_item()? {
            match item {
                Item::Object(b) => out.push(String::from_utf8_lossy(b).into_owned()),
                Item::NotAnObject(b) => out.push(format!("!{}", String::from_utf8_lossy(b))),
            }
        }
        Ok(out)
    }

    /// Found by the property test: a source that yields one byte per read still has its
    /// gzip magic recognised.
    #[test]
    fn gzip_is_detected_from_a_one_byte_at_a_time_source() {
        use std::io::Write;
        struct OneByte(Vec<u8>, usize);
        impl Read for OneByte {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                if self.1 >= self.0.len() || out.is_empty() {
                    return Ok(0);
                }
                out[0] = self.0[self.1];
                self.1 += 1;
                Ok(1)
            }
        }
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(br#"{"Records":[{"a":1}]}"#).expect("gz");
        let gz = e.finish().expect("gz");
        let mut r = RecordReader::new(decompressing(OneByte(gz, 0)).expect("open"));
        assert_eq!(
            r.next_item().expect("item"),
            Some(Item::Object(br#"{"a":1}"#))
        );
        assert_eq!(r.next_item().expect("end"), None);
        // Sources shorter than the magic are plain text.
        let mut r = RecordReader::new(decompressing(OneByte(b" ".to_vec(), 0)).expect("open"));
        assert_eq!(r.next_item().expect("end"), None);
    }

    /// The gzip input's buffer hands over exactly the source's bytes, whatever the read
    /// sizes: small reads through the buffer, reads of a buffer or more around it.
    #[test]
    fn spare_buf_reader_passes_every_byte_through() {
        let src: Vec<u8> = (0..3 * CHUNK + 17).map(|i| (i * 7 % 251) as u8).collect();
        let mut r = SpareBufReader::new(io::Cursor::new(src.clone()));
        let (mut got, mut sizes) = (Vec::new(), [1, 7, CHUNK, 2 * CHUNK, 3].iter().cycle());
        loop {
            let mut out = vec![0; *sizes.next().expect("cycle")];
            let n = r.read(&mut out).expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&out[..n]);
        }
        assert_eq!(got.len(), src.len());
        assert!(got == src, "bytes differ");
        // And through `BufRead`, as the gzip decoder reads it.
        let mut r = SpareBufReader::new(io::Cursor::new(src.clone()));
        let mut got = Vec::new();
        loop {
            let avail = r.fill_buf().expect("fill").len().min(1000);
            if avail == 0 {
                break;
            }
            got.extend_from_slice(&r.fill_buf().expect("fill")[..avail]);
            r.consume(avail);
        }
        assert!(got == src, "bytes differ through BufRead");
    }

    /// The second object on a thread reads with the first one's two buffers instead of
    /// allocating (and zeroing) new ones.
    #[test]
    fn the_next_object_reuses_the_buffers_of_the_last() {
        use std::io::Write;
        let gz = |text: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(text).expect("gz");
            e.finish().expect("gz")
        };
        let spares = || SPARE_BUFFERS.with(|s| s.borrow().iter().map(|b| b.as_ptr()).collect());
        let read_all = |bytes: Vec<u8>| {
            let mut r = RecordReader::new(decompressing(io::Cursor::new(bytes)).expect("open"));
            let mut n = 0;
            while r.next_item().expect("item").is_some() {
                n += 1;
            }
            n
        };
        assert_eq!(read_all(gz(br#"{"Records":[{"a":1},{"b":2}]}"#)), 2);
        let first: Vec<*const u8> = spares();
        assert_eq!(first.len(), 2, "both buffers come back");
        // Held by the next object while it is read: none left over, none added.
        let r = RecordReader::new(decompressing(io::Cursor::new(gz(b"[{}]"))).expect("open"));
        assert!(spares().is_empty(), "the next object took both");
        drop(r);
        let mut again: Vec<*const u8> = spares();
        again.sort();
        let mut first = first;
        first.sort();
        assert_eq!(again, first, "the same two buffers, not new ones");
    }
    fn all_chunkings(input: &str) -> Vec<String> {
        let first = collect(input.as_bytes(), usize::MAX).expect("whole");
        for chunk in [1, 2, 3, 5, 7, 64] {
            let got = collect(input.as_bytes(), chunk).expect("chunked");
            assert_eq!(got, first, "chunk size {chunk}");
        }
        first
    }

    #[test]
    fn envelope_records_in_order() {
        let got = all_chunkings(r#"{"Records":[{"a":1},{"b":"x}{]"},{"c":{"d":[1,2]}}]}"#);
        assert_eq!(
            got,
            vec![r#"{"a":1}"#, r#"{"b":"x}{]"}"#, r#"{"c":{"d":[1,2]}}"#]
        );
    }

    #[test]
    fn envelope_with_whitespace_escapes_and_tail_members() {
        let input = "\u{feff}\n { \"Records\" : [ {\"k\":\"a\\\"}\\\\\"} ,\n{\"x\":[]} ] , \"extra\": {\"n\": [1, \"]\"]}, \"m\": 5 }\n";
        let got = all_chunkings(input);
        assert_eq!(got, vec![r#"{"k":"a\"}\\"}"#, r#"{"x":[]}"#]);
    }

    #[test]
    fn bare_array_ndjson_and_empty_forms() {
        assert_eq!(all_chunkings(r#"[{"a":1}, {"b":2}]"#).len(), 2);
        assert_eq!(
            all_chunkings("{\"eventID\":\"1\"}\n{\"eventID\":\"2\"}\n"),
            vec![r#"{"eventID":"1"}"#, r#"{"eventID":"2"}"#]
        );
        assert!(all_chunkings(r#"{"Records":[]}"#).is_empty());
        assert!(all_chunkings("[]").is_empty());
        assert!(all_chunkings("  \n").is_empty());
        assert!(all_chunkings("{}").is_empty());
    }

    #[test]
    fn non_object_elements_are_reported() {
        assert_eq!(
            all_chunkings(r#"{"Records":[1, "s", null, {"a":1}, [2]]}"#),
            vec!["!1", "!\"s\"", "!null", r#"{"a":1}"#, "![2]"]
        );
    }

    #[test]
    fn truncated_and_invalid_inputs_are_errors() {
        for bad in [
            r#"{"Records":[{"a":1},{"b":"#,
            r#"{"Records":[{"a":1}"#,
            r#"{"Records":[{"a":1},"#,
            r#"{"Records":"#,
        ] {
            let err = collect(bad.as_bytes(), 3).expect_err(bad);
            assert!(matches!(err, ReadError::Truncated { .. }), "{bad}: {err}");
        }
        for bad in [
            r#"{"Records":[{"a":1} {"b":2}]}"#,
            "garbage",
            r#"{"Records":5}"#,
        ] {
            let err = collect(bad.as_bytes(), 3).expect_err(bad);
            assert!(matches!(err, ReadError::Json { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn offsets_point_into_the_stream() {
        let err = collect(br#"{"Records":[{"a":1} x]}"#, 4).expect_err("bad");
        match err {
            ReadError::Json { offset, .. } => assert_eq!(offset, 20),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn drain_reads_the_source_to_its_end() {
        let text = format!("{{\"Records\":[{{\"a\":1}}]}}{}", " \n".repeat(300_000));
        let mut r = RecordReader::new(io::Cursor::new(text.as_bytes()));
        assert!(matches!(
            r.next_item(),
            Ok(Some(Item::Object(b"{\"a\":1}")))
        ));
        assert!(matches!(r.next_item(), Ok(None)));
        r.drain().expect("drains");
        assert_eq!(r.get_mut().position(), text.len() as u64);
        assert_eq!(r.offset(), text.len() as u64);
        assert!(matches!(r.next_item(), Ok(None)));
    }
}
