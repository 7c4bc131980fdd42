//! Gzip (RFC 1952) decoding with one inflate state per thread.
//!
//! `flate2`'s `MultiGzDecoder` creates a fresh inflate state for every object, and
//! zlib-rs allocates and zeroes it (window and tables) each time: 15,900 instructions a
//! CloudTrail object, 1.8% of ingesting a trail of 40 KB objects (callgrind, the SHA-256
//! aside). [`Gunzip`] frames the members itself and takes a reset state from the thread's
//! spare instead. It reads what `MultiGzDecoder` reads: every member to the end of the
//! input, each header's optional fields (and its CRC-16 when flagged) checked, each
//! member's CRC-32 and length checked; anything after a member that is not another member
//! is an error.

use std::cell::RefCell;
use std::io::{self, BufRead, Read};

use flate2::{Crc, Decompress, FlushDecompress, Status};

thread_local! {
    /// The inflate state of the last finished decoder on this thread, reset.
    static SPARE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const RESERVED: u8 = 0xe0;

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn truncated(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, msg)
}

/// The end of the input where more was due is a truncated object; any other error of
/// the source (a dropped connection) stays what it was, so that it is retried.
fn eof_means(e: io::Error, msg: &'static str) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        truncated(msg)
    } else {
        e
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a member (the first always; later ones when input remains).
    Header {
        first: bool,
    },
    Body,
    Done,
}

/// A gzip decoder over a buffered source. See the module docs.
pub struct Gunzip<R> {
    src: R,
    /// Always `Some` until dropped, when it goes back to the thread's spare.
    inflate: Option<Decompress>,
    /// CRC-32 and length of the current member's output.
    crc: Crc,
    state: State,
}

impl<R: BufRead> Gunzip<R> {
    pub fn new(src: R) -> Self {
        let inflate = SPARE
            .with(|s| s.borrow_mut().take())
            .unwrap_or_else(|| Decompress::new(false));
        Gunzip {
            src,
            inflate: Some(inflate),
            crc: Crc::new(),
            state: State::Header { first: true },
        }
    }

    /// Reads exactly `out.len()` header bytes, adding them to the header's CRC.
    fn header_bytes(&mut self, out: &mut [u8], hcrc: &mut Crc) -> io::Result<()> {
        self.src
            .read_exact(out)
            .map_err(|e| eof_means(e, "truncated gzip header"))?;
        hcrc.update(out);
        Ok(())
    }

    /// Skips a zero-terminated header field.
    fn skip_zero_terminated(&mut self, hcrc: &mut Crc) -> io::Result<()> {
        loop {
            let buf = self.src.fill_buf()?;
            if buf.is_empty() {
                return Err(truncated("truncated gzip header"));
            }
            let (n, done) = match memchr::memchr(0, buf) {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            hcrc.update(&buf[..n]);
            self.src.consume(n);
            if done {
                return Ok(());
            }
        }
    }

    /// Reads a member's header. False when the input ends where a later member would
    /// start.
    fn header(&mut self, first: bool) -> io::Result<bool> {
        if !first && self.src.fill_buf()?.is_empty() {
            return Ok(false);
        }
        let mut hcrc = Crc::new();
        let mut fixed = [0u8; 10];
        self.header_bytes(&mut fixed, &mut hcrc)?;
        if fixed[..3] != [0x1f, 0x8b, 8] {
            return Err(invalid("invalid gzip header"));
        }
        let flags = fixed[3];
        if flags & RESERVED != 0 {
            return Err(invalid("invalid gzip header: reserved flags set"));
        }
        if flags & FEXTRA != 0 {
            let mut len = [0u8; 2];
            self.header_bytes(&mut len, &mut hcrc)?;
            let mut left = usize::from(u16::from_le_bytes(len));
            while left > 0 {
                let buf = self.src.fill_buf()?;
                if buf.is_empty() {
                    return Err(truncated("truncated gzip header"));
                }
                let n = buf.len().min(left);
                hcrc.update(&buf[..n]);
                self.src.consume(n);
                left -= n;
            }
        }
        if flags & FNAME != 0 {
            self.skip_zero_terminated(&mut hcrc)?;
        }
        if flags & FCOMMENT != 0 {
            self.skip_zero_terminated(&mut hcrc)?;
        }
        if flags & FHCRC != 0 {
            let want = hcrc.sum() as u16;
            let mut got = [0u8; 2];
            self.header_bytes(&mut got, &mut hcrc)?;
            if u16::from_le_bytes(got) != want {
                return Err(invalid("gzip header CRC mismatch"));
            }
        }
        Ok(true)
    }

    /// Checks a member's trailer against what it decompressed to.
    fn trailer(&mut self) -> io::Result<()> {
        let mut t = [0u8; 8];
        self.src
            .read_exact(&mut t)
            .map_err(|e| eof_means(e, "truncated gzip trailer"))?;
        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
        let len = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
        if crc != self.crc.sum() || len != self.crc.amount() {
            return Err(invalid(
                "corrupt gzip stream does not have a matching checksum",
            ));
        }
        Ok(())
    }
}

impl<R: BufRead> Read for Gunzip<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Done => return Ok(0),
                State::Header { first } => {
                    self.state = if self.header(first)? {
                        State::Body
                    } else {
                        State::Done
                    };
                }
                State::Body => {
                    let Some(inflate) = self.inflate.as_mut() else {
                        return Err(invalid("gzip decoder already dropped"));
                    };
                    let input = self.src.fill_buf()?;
                    let at_end = input.is_empty();
                    let (in0, out0) = (inflate.total_in(), inflate.total_out());
                    let status = inflate
                        .decompress(input, out, FlushDecompress::None)
                        .map_err(|e| {
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("corrupt deflate stream: {e}"),
                            )
                        })?;
                    let used = (inflate.total_in() - in0) as usize;
                    let made = (inflate.total_out() - out0) as usize;
                    self.src.consume(used);
                    self.crc.update(&out[..made]);
                    if status == Status::StreamEnd {
                        inflate.reset(false);
                        self.trailer()?;
                        self.crc.reset();
                        self.state = State::Header { first: false };
                    } else if made == 0 && used == 0 {
                        // With input and room for output, inflate always moves.
                        return Err(if at_end {
                            truncated("truncated gzip stream")
                        } else {
                            invalid("gzip stream makes no progress")
                        });
                    }
                    if made > 0 {
                        return Ok(made);
                    }
                }
            }
        }
    }
}

impl<R> Drop for Gunzip<R> {
    fn drop(&mut self) {
        if let Some(mut inflate) = self.inflate.take() {
            inflate.reset(false);
            // `try_with`: a decoder dropped while its thread exits has nowhere to go.
            let _ = SPARE.try_with(|s| *s.borrow_mut() = Some(inflate));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::reader::Chunked;
    use flate2::write::GzEncoder;
    use flate2::{Compression, GzBuilder};
    use proptest::prelude::*;
    use std::io::Write;

    fn gz(data: &[u8], level: u32) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
        e.write_all(data).expect("write");
        e.finish().expect("finish")
    }

    /// Everything `Gunzip` reads from `data`, fed `step` bytes at a time and read `chunk`
    /// bytes at a time.
    fn ours(data: &[u8], step: usize, chunk: usize) -> io::Result<Vec<u8>> {
        let src = io::BufReader::with_capacity(step.max(1), Chunked(data, step));
        let mut g = Gunzip::new(src);
        let mut out = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            match g.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn flate2s(data: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(data).read_to_end(&mut out)?;
        Ok(out)
    }

    fn text(n: usize) -> Vec<u8> {
        (0..n)
            .map(|i| format!("{{\"eventID\":\"{i}\",\"n\":{}}}", i * 7919 % 1000))
            .collect::<String>()
            .into_bytes()
    }

    #[test]
    fn reads_what_flate2_reads() {
        let data = text(20_000);
        for level in [0, 1, 6, 9] {
            let z = gz(&data, level);
            for (step, chunk) in [(1 << 20, 1 << 18), (7, 13), (1, 1), (4096, 1)] {
                assert_eq!(
                    ours(&z, step, chunk).expect("reads"),
                    data,
                    "{level} {step}"
                );
            }
        }
        assert_eq!(ours(&gz(b"", 6), 3, 5).expect("empty"), b"");
    }

    #[test]
    fn reads_optional_header_fields_and_checks_their_crc() {
        let data = text(500);
        let mut e = GzBuilder::new()
            .filename("a.json")
            .comment("from a test")
            .extra(vec![7u8; 300])
            .write(Vec::new(), Compression::fast());
        e.write_all(&data).expect("write");
        let z = e.finish().expect("finish");
        assert_eq!(ours(&z, 5, 64).expect("reads"), data);

        // The same member with FHCRC: its CRC-16 follows the optional fields.
        let body_at = 10 + 2 + 300 + "a.json".len() + 1 + "from a test".len() + 1;
        let mut h = z[..body_at].to_vec();
        h[3] |= FHCRC;
        let mut c = Crc::new();
        c.update(&h);
        let mut with_crc = h.clone();
        with_crc.extend_from_slice(&(c.sum() as u16).to_le_bytes());
        with_crc.extend_from_slice(&z[body_at..]);
        assert_eq!(ours(&with_crc, 3, 100).expect("reads"), data);
        assert_eq!(flate2s(&with_crc).expect("flate2 agrees"), data);
        let mut bad = with_crc.clone();
        bad[body_at] ^= 1;
        assert_eq!(
            ours(&bad, 3, 100).expect_err("bad CRC-16").kind(),
            io::ErrorKind::InvalidData
        );
        assert!(flate2s(&bad).is_err());
    }

    #[test]
    fn reads_every_member() {
        let (a, b) = (text(300), text(700));
        let mut z = gz(&a, 6);
        z.extend(gz(b"", 1));
        z.extend(gz(&b, 1));
        assert_eq!(ours(&z, 11, 100).expect("reads"), [a, b].concat());
    }

    #[test]
    fn damage_is_an_error_never_short_data() {
        let data = text(3_000);
        let z = gz(&data, 6);
        let kinds = [
            io::ErrorKind::InvalidData,
            io::ErrorKind::InvalidInput,
            io::ErrorKind::UnexpectedEof,
        ];
        // Cut anywhere, including inside the header and the trailer.
        for cut in (0..z.len())
            .step_by(97)
            .chain([1, 9, z.len() - 8, z.len() - 1])
        {
            let e = ours(&z[..cut], 64, 1000).expect_err("truncated");
            assert!(kinds.contains(&e.kind()), "cut at {cut}: {e}");
        }
        // A wrong CRC-32, a wrong length, a reserved flag, bytes after the member.
        for (at, bit) in [(z.len() - 8, 1u8), (z.len() - 4, 1), (3, 0x20)] {
            let mut bad = z.clone();
            bad[at] ^= bit;
            let e = ours(&bad, 64, 1000).expect_err("damaged");
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{at}: {e}");
            assert!(flate2s(&bad).is_err(), "flate2 agrees at {at}");
        }
        let mut trailing = z.clone();
        trailing.extend_from_slice(b"\n");
        assert!(ours(&trailing, 64, 1000).is_err());
        assert!(flate2s(&trailing).is_err());
    }

    /// A source whose connection drops after `data`.
    struct Dropped<'a>(&'a [u8]);

    impl Read for Dropped<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            let n = out.len().min(self.0.len());
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn a_dropped_source_is_not_taken_for_a_damaged_object() {
        let z = gz(&text(3_000), 6);
        // In the header, the body and the trailer.
        for cut in [5, z.len() / 2, z.len() - 3] {
            let mut g = Gunzip::new(io::BufReader::with_capacity(64, Dropped(&z[..cut])));
            let e = io::copy(&mut g, &mut io::sink()).expect_err("dropped");
            assert_eq!(
                e.kind(),
                io::ErrorKind::ConnectionReset,
                "cut at {cut}: {e}"
            );
        }
        // Damage names itself.
        let e = ours(
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03 not deflate",
            64,
            100,
        )
        .expect_err("corrupt");
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().starts_with("corrupt deflate stream"), "{e}");
    }

    #[test]
    fn a_reused_state_starts_clean_even_after_a_failed_object() {
        let (a, b) = (text(2_000), text(1_000));
        let za = gz(&a, 6);
        // Fails half-way, leaving its state mid-stream for the next decoder on the thread.
        ours(&za[..za.len() / 2], 64, 1000).expect_err("truncated");
        assert_eq!(ours(&gz(&b, 1), 64, 1000).expect("reads"), b);
        assert_eq!(ours(&za, 64, 1000).expect("reads"), a);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever the bytes, `Gunzip` and `MultiGzDecoder` agree: the same output, or
        /// both an error.
        #[test]
        fn agrees_with_flate2(
            data in proptest::collection::vec(any::<u8>(), 0..3000),
            members in 1usize..3,
            flip in proptest::option::of((any::<prop::sample::Index>(), 1u8..=255)),
            step in 1usize..600,
        ) {
            let mut z = Vec::new();
            for _ in 0..members {
                z.extend(gz(&data, 6));
            }
            if let Some((i, bits)) = flip {
                let i = i.index(z.len());
                z[i] ^= bits;
            }
            match (ours(&z, step, 333), flate2s(&z)) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => prop_assert!(false, "ours {:?}, flate2 {:?}", a.map(|v| v.len()), b.map(|v| v.len())),
            }
        }
    }
}
