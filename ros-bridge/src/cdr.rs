//! CDR, the bytes ROS 2 messages travel as (XCDR1, little-endian, as Fast DDS sends them): a
//! 4-byte encapsulation header, then the fields in order, each primitive aligned to its size
//! (at most 8) counted from the end of the header. Strings are a u32 length that counts a
//! closing NUL, the bytes, the NUL; sequences a u32 count, then the elements.
//!
//! ```
//! use spook_ros::cdr::{Reader, Writer};
//! let mut w = Writer::new();
//! w.string("hello");
//! assert_eq!(w.finish(), [0, 1, 0, 0, 6, 0, 0, 0, b'h', b'e', b'l', b'l', b'o', 0]);
//! ```

/// Why bytes are not a message of the expected type. Nothing of such a message is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdrError {
    /// Shorter than the header.
    #[error("{0} bytes: shorter than a CDR header")]
    NoHeader(usize),
    /// A header this bridge does not read (big-endian or XCDR2).
    #[error("CDR encapsulation {0:02x}{1:02x}: only little-endian XCDR1 (00 01) is read")]
    Encapsulation(u8, u8),
    /// The message ends inside a field.
    #[error("the message ends at byte {len} inside a field that needs {need} bytes at {at}")]
    Truncated {
        /// Where the field starts (after the header).
        at: usize,
        /// Its size.
        need: usize,
        /// The data's length (after the header).
        len: usize,
    },
    /// A string without its NUL, or not UTF-8.
    #[error("a string at byte {0} is not NUL-terminated UTF-8")]
    BadString(usize),
    /// A length larger than the message could hold.
    #[error("a length of {0} at byte {1} is larger than the message")]
    BadLength(u32, usize),
}

/// Little-endian XCDR1 with no options.
const HEADER: [u8; 4] = [0x00, 0x01, 0x00, 0x00];

/// Writes one message.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    /// A message with its header.
    #[must_use]
    pub fn new() -> Writer {
        Writer { out: HEADER.to_vec() }
    }

    fn align(&mut self, n: usize) {
        while (self.out.len() - HEADER.len()) % n != 0 {
            self.out.push(0);
        }
    }

    /// A u8 (or an i8's bits, or a bool).
    pub fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    /// A u16.
    pub fn u16(&mut self, v: u16) {
        self.align(2);
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// A u32.
    pub fn u32(&mut self, v: u32) {
        self.align(4);
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// An i32.
    pub fn i32(&mut self, v: i32) {
        self.u32(u32::from_le_bytes(v.to_le_bytes()));
    }

    /// An f64.
    pub fn f64(&mut self, v: f64) {
        self.align(8);
        self.out.extend_from_slice(&v.to_le_bytes());
    }

    /// A string (length with its NUL, bytes, NUL).
    pub fn string(&mut self, s: &str) {
        self.u32(u32::try_from(s.len() + 1).unwrap_or(u32::MAX));
        self.out.extend_from_slice(s.as_bytes());
        self.out.push(0);
    }

    /// The message's bytes.
    #[must_use]
    pub fn finish(self) -> Vec<u8> {
        self.out
    }
}

/// Reads one message; trailing padding is accepted.
#[derive(Debug)]
pub struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// A reader past the header of `bytes`.
    ///
    /// # Errors
    /// No header, or one this bridge does not read.
    pub fn new(bytes: &'a [u8]) -> Result<Reader<'a>, CdrError> {
        if bytes.len() < HEADER.len() {
            return Err(CdrError::NoHeader(bytes.len()));
        }
        if bytes[..2] != HEADER[..2] {
            return Err(CdrError::Encapsulation(bytes[0], bytes[1]));
        }
        Ok(Reader { data: &bytes[HEADER.len()..], at: 0 })
    }

    fn take(&mut self, n: usize, align: usize) -> Result<&'a [u8], CdrError> {
        let at = self.at.next_multiple_of(align);
        let end = at.checked_add(n).filter(|&e| e <= self.data.len()).ok_or(CdrError::Truncated { at, need: n, len: self.data.len() })?;
        self.at = end;
        Ok(&self.data[at..end])
    }

    fn array<const N: usize>(&mut self, align: usize) -> Result<[u8; N], CdrError> {
        let b = self.take(N, align)?;
        let mut out = [0; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// A u8.
    ///
    /// # Errors
    /// The message ends.
    pub fn u8(&mut self) -> Result<u8, CdrError> {
        Ok(self.take(1, 1)?[0])
    }

    /// A u16.
    ///
    /// # Errors
    /// The message ends.
    pub fn u16(&mut self) -> Result<u16, CdrError> {
        Ok(u16::from_le_bytes(self.array(2)?))
    }

    /// A u32.
    ///
    /// # Errors
    /// The message ends.
    pub fn u32(&mut self) -> Result<u32, CdrError> {
        Ok(u32::from_le_bytes(self.array(4)?))
    }

    /// An i32.
    ///
    /// # Errors
    /// The message ends.
    pub fn i32(&mut self) -> Result<i32, CdrError> {
        Ok(i32::from_le_bytes(self.array(4)?))
    }

    /// An f64.
    ///
    /// # Errors
    /// The message ends.
    pub fn f64(&mut self) -> Result<f64, CdrError> {
        Ok(f64::from_le_bytes(self.array(8)?))
    }

    /// A string.
    ///
    /// # Errors
    /// The message ends, or the string has no NUL or is not UTF-8.
    pub fn string(&mut self) -> Result<String, CdrError> {
        let len = self.u32()?;
        let at = self.at;
        let n = usize::try_from(len).map_err(|_| CdrError::BadLength(len, at))?;
        if n > self.data.len() - at {
            return Err(CdrError::BadLength(len, at));
        }
        let b = self.take(n, 1)?;
        match b.split_last() {
            Some((0, s)) => std::str::from_utf8(s).map(str::to_string).map_err(|_| CdrError::BadString(at)),
            _ => Err(CdrError::BadString(at)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_string_reads_back_with_or_without_padding_and_bad_bytes_are_refused() {
        let golden = [0, 1, 0, 0, 6, 0, 0, 0, b'h', b'e', b'l', b'l', b'o', 0];
        assert_eq!(Reader::new(&golden).unwrap().string().unwrap(), "hello");
        let mut padded = golden.to_vec();
        padded.extend([0, 0]);
        assert_eq!(Reader::new(&padded).unwrap().string().unwrap(), "hello");
        assert_eq!(Reader::new(&golden[..3]).unwrap_err(), CdrError::NoHeader(3));
        assert_eq!(Reader::new(&[1, 0, 0, 0]).unwrap_err(), CdrError::Encapsulation(1, 0));
        assert!(matches!(Reader::new(&golden[..10]).unwrap().string(), Err(CdrError::BadLength(6, 4))));
        let no_nul = [0, 1, 0, 0, 2, 0, 0, 0, b'h', b'i'];
        assert_eq!(Reader::new(&no_nul).unwrap().string(), Err(CdrError::BadString(4)));
        let huge = [0, 1, 0, 0, 0xff, 0xff, 0xff, 0xff];
        assert!(matches!(Reader::new(&huge).unwrap().string(), Err(CdrError::BadLength(u32::MAX, 4))));
        assert!(matches!(Reader::new(&[0, 1, 0, 0, 1]).unwrap().f64(), Err(CdrError::Truncated { at: 0, need: 8, len: 1 })));
    }
}
