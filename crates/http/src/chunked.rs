//! Decoding `Transfer-Encoding: chunked` request bodies, incrementally.

use alloc::vec::Vec;

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// Not valid chunked framing (answered with 400).
    Malformed,
    /// The decoded body would exceed the limit (413).
    TooLarge,
}

/// A chunked-body decoder: feed it the bytes that follow the head; it
/// appends the data to a body and says how many input bytes it used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes to go.
    Data(usize),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Expecting trailer fields or the final CRLF; the bytes of trailers
    /// seen so far.
    Trailers(usize),
    /// The body is complete.
    Done,
}

/// Longest chunk-size line (with extensions) or trailer line accepted.
const MAX_LINE: usize = 1024;

impl Decoder {
    /// Decodes as much of `input` as possible into `body` (which may not
    /// grow beyond `max_body` bytes, nor trailers beyond `max_trailers`).
    /// Returns the bytes of `input` used; the rest (an incomplete line)
    /// must be given again with more after it. `input` beyond the body's
    /// end is not used.
    pub fn feed(
        &mut self,
        input: &[u8],
        body: &mut Vec<u8>,
        max_body: usize,
        max_trailers: usize,
    ) -> Result<usize, ChunkError> {
        let mut used = 0;
        loop {
            let rest = &input[used..];
            match *self {
                Decoder::Done => return Ok(used),
                Decoder::Size => {
                    let Some(line) = line(rest)? else {
                        return Ok(used);
                    };
                    used += line.len() + 2;
                    // chunk-size [ chunk-ext ]: extensions are ignored.
                    let size = line.split(|&b| b == b';').next().unwrap_or(&[]);
                    let size = size.trim_ascii_end();
                    if size.is_empty() || size.len() > 16 {
                        return Err(ChunkError::Malformed);
                    }
                    let mut n: u64 = 0;
                    for &c in size {
                        let d = (c as char).to_digit(16).ok_or(ChunkError::Malformed)?;
                        n = n << 4 | d as u64;
                    }
                    if n == 0 {
                        *self = Decoder::Trailers(0);
                    } else if n > (max_body - body.len()) as u64 {
                        return Err(ChunkError::TooLarge);
                    } else {
                        *self = Decoder::Data(n as usize);
                    }
                }
                Decoder::Data(left) => {
                    if rest.is_empty() {
                        return Ok(used);
                    }
                    let n = left.min(rest.len());
                    body.extend_from_slice(&rest[..n]);
                    used += n;
                    *self = if n == left {
                        Decoder::DataEnd
                    } else {
                        Decoder::Data(left - n)
                    };
                }
                Decoder::DataEnd => {
                    if rest.len() < 2 {
                        return Ok(used);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(ChunkError::Malformed);
                    }
                    used += 2;
                    *self = Decoder::Size;
                }
                Decoder::Trailers(seen) => {
                    let Some(line) = line(rest)? else {
                        return Ok(used);
                    };
                    used += line.len() + 2;
                    if line.is_empty() {
                        *self = Decoder::Done;
                    } else {
                        let seen = seen + line.len() + 2;
                        if seen > max_trailers {
                            return Err(ChunkError::TooLarge);
                        }
                        *self = Decoder::Trailers(seen);
                    }
                }
            }
        }
    }
}

/// The line at the start of `input` without its CRLF, or `None` if it is
/// not complete yet.
fn line(input: &[u8]) -> Result<Option<&[u8]>, ChunkError> {
    match input.windows(2).position(|w| w == b"\r\n") {
        Some(end) if end <= MAX_LINE => Ok(Some(&input[..end])),
        Some(_) => Err(ChunkError::Malformed),
        None if input.len() > MAX_LINE + 1 => Err(ChunkError::Malformed),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut d = Decoder::Size;
        let mut body = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut consumed = 0;
        for p in input.chunks(piece) {
            pending.extend_from_slice(p);
            let n = d.feed(&pending, &mut body, 100, 100)?;
            consumed += n;
            pending.drain(..n);
            if d == Decoder::Done {
                return Ok((body, consumed));
            }
        }
        panic!("incomplete: {d:?}");
    }

    #[test]
    fn decodes_in_any_pieces() {
        let input =
            b"5;ext=1\r\nhello\r\n1A\r\n abcdefghijklmnopqrstuvwxy\r\n0\r\nX-T: 1\r\n\r\nGET";
        for piece in 1..input.len() {
            let (body, used) = decode_in_pieces(input, piece).unwrap();
            assert_eq!(body, b"hello abcdefghijklmnopqrstuvwxy");
            assert_eq!(used, input.len() - 3, "piece {piece}");
        }
    }

    #[test]
    fn refuses_bad_framing_and_large_bodies() {
        let mut body = Vec::new();
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"11111111111111111\r\n",
        ] {
            assert_eq!(
                Decoder::Size.feed(bad, &mut body, 100, 100),
                Err(ChunkError::Malformed),
                "{bad:?}"
            );
        }
        assert_eq!(
            Decoder::Size.feed(b"65\r\n", &mut body, 100, 100),
            Err(ChunkError::TooLarge)
        );
        let long = alloc::vec![b'1'; 2000];
        assert_eq!(
            Decoder::Size.feed(&long, &mut body, 100, 100),
            Err(ChunkError::Malformed)
        );
    }
}
