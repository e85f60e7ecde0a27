//! What a file is, from its first bytes — never from its name or the type a client
//! claims. Only allow-listed types are accepted.

/// How many leading bytes `sniff` and `dimensions` want to see (fewer for short files).
pub const SNIFF_BYTES: usize = 64 * 1024;

/// The content type of a file starting with `head`, if it is one Palaver accepts.
/// `complete` says whether `head` is the whole file (for text, which has no magic).
pub fn sniff(head: &[u8], complete: bool) -> Option<&'static str> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    let at = |offset: usize, magic: &[u8]| head.get(offset..offset + magic.len()) == Some(magic);
    Some(match () {
        () if starts(b"\x89PNG\r\n\x1a\n") => "image/png",
        () if starts(b"\xff\xd8\xff") => "image/jpeg",
        () if starts(b"GIF87a") || starts(b"GIF89a") => "image/gif",
        () if starts(b"RIFF") && at(8, b"WEBP") => "image/webp",
        () if starts(b"RIFF") && at(8, b"WAVE") => "audio/wav",
        () if starts(b"%PDF-") => "application/pdf",
        () if starts(b"PK\x03\x04") || starts(b"PK\x05\x06") => "application/zip",
        () if starts(b"OggS") => "audio/ogg",
        () if starts(b"ID3") || (head.len() >= 2 && head[0] == 0xff && head[1] & 0xe0 == 0xe0) => {
            "audio/mpeg"
        }
        () if at(4, b"ftyp") => "video/mp4",
        () if starts(b"\x1a\x45\xdf\xa3") => "video/webm",
        () if is_text(head, complete) => "text/plain",
        () => return None,
    })
}

/// Text has no control characters but tab, line breaks and form feed (binaries, even
/// those whose first bytes are valid UTF-8, soon have NUL or DEL).
fn is_text_control(b: u8) -> bool {
    (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c)) || b == 0x7f
}

/// Plain UTF-8 text (served as `text/plain; charset=utf-8`); a character cut off at the end
/// of a partial head is fine.
fn is_text(head: &[u8], complete: bool) -> bool {
    if head.is_empty() {
        return false;
    }
    let mut check = TextCheck::default();
    check.feed(head) && (!complete || check.finish())
}

/// Checks a text upload as it streams: every byte UTF-8 and no control characters, not
/// only the head that chose the type (a file served as `text/plain; charset=utf-8` is
/// text to its last byte).
#[derive(Debug, Default)]
pub struct TextCheck {
    /// The start of a character cut by the end of the last chunk (at most 3 bytes).
    carry: Vec<u8>,
}

impl TextCheck {
    /// Takes the next chunk; false once the text is not valid.
    pub fn feed(&mut self, chunk: &[u8]) -> bool {
        if chunk.iter().any(|b| is_text_control(*b)) {
            return false;
        }
        let mut joined;
        let bytes = if self.carry.is_empty() {
            chunk
        } else {
            joined = std::mem::take(&mut self.carry);
            joined.extend_from_slice(chunk);
            &joined[..]
        };
        match std::str::from_utf8(bytes) {
            Ok(_) => true,
            // A character cut by the chunk's end waits for the next chunk.
            Err(e) if e.error_len().is_none() => {
                self.carry = bytes[e.valid_up_to()..].to_vec();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the text ended on a whole character.
    pub fn finish(self) -> bool {
        self.carry.is_empty()
    }
}

/// The longest side of an image accepted (as JPEG and GIF headers can state; a client
/// that lays out a message by these numbers must be able to trust them).
pub const MAX_IMAGE_SIDE: u32 = 65_535;
/// The most pixels an image accepted may claim (a decompression bomb in any client that
/// renders it otherwise).
pub const MAX_IMAGE_PIXELS: u64 = 150_000_000;

/// An image's width and height from its header, checked: the header must be whole and
/// well-formed (a PNG's `IHDR` first, of its fixed length), and the sides between 1 and
/// [`MAX_IMAGE_SIDE`] with at most [`MAX_IMAGE_PIXELS`]. `None`: refuse the image.
pub fn dimensions(head: &[u8]) -> Option<(u32, u32)> {
    if head.starts_with(b"\x89PNG\r\n\x1a\n") && head.get(8..16) != Some(b"\0\0\0\x0dIHDR") {
        return None;
    }
    let size = imagesize::blob_size(head).ok()?;
    let (width, height) = (u32::try_from(size.width).ok()?, u32::try_from(size.height).ok()?);
    let sane = (1..=MAX_IMAGE_SIDE).contains(&width)
        && (1..=MAX_IMAGE_SIDE).contains(&height)
        && u64::from(width) * u64::from(height) <= MAX_IMAGE_PIXELS;
    sane.then_some((width, height))
}

/// A display and download name: the last path component, without control characters,
/// quotes or separators that could break a header, at most 255 characters; `file` when
/// nothing is left.
pub fn sanitize_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String =
        base.chars().filter(|c| !c.is_control() && !matches!(c, '"' | ';' | '\\' | '/')).take(255).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_owned();
    if cleaned.is_empty() { "file".to_owned() } else { cleaned }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_magic_bytes_only() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....", false), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0", false), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ", false), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7", false), Some("application/pdf"));
        assert_eq!(sniff("hello, wörld".as_bytes(), true), Some("text/plain"));
        // An executable or random binary is refused, whatever it claims to be.
        assert_eq!(sniff(b"\x7fELF\x02\x01\x01", true), None);
        assert_eq!(sniff(b"MZ\x90\0", true), None);
        assert_eq!(sniff(&[0xc3], true), None, "a cut-off character is not text when complete");
        assert_eq!(sniff(&[b'a', 0xc3], false), Some("text/plain"));
        assert_eq!(sniff(b"", true), None);
    }

    #[test]
    fn text_is_checked_to_its_last_byte_across_chunks() {
        let text = "héllo wörld 👋 ".repeat(100);
        let bytes = text.as_bytes();
        for cut in [1, 2, 3, 7, 64] {
            let mut check = TextCheck::default();
            assert!(bytes.chunks(cut).all(|chunk| check.feed(chunk)), "chunks of {cut}");
            assert!(check.finish());
        }
        let mut check = TextCheck::default();
        assert!(check.feed(b"fine so far \xf0\x9f"));
        assert!(!check.feed(b"\x41"), "a broken character across chunks");
        let mut check = TextCheck::default();
        assert!(check.feed(b"ends in the middle \xc3"));
        assert!(!check.finish());
        let mut check = TextCheck::default();
        assert!(!check.feed(b"a NUL \0 later on"));
    }

    #[test]
    fn absurd_or_malformed_image_headers_are_refused() {
        let png = |w: u32, h: u32| {
            let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
            png.extend_from_slice(&w.to_be_bytes());
            png.extend_from_slice(&h.to_be_bytes());
            png.extend_from_slice(&[8, 6, 0, 0, 0]);
            png
        };
        assert_eq!(dimensions(&png(640, 480)), Some((640, 480)));
        assert_eq!(dimensions(&png(0, 480)), None);
        assert_eq!(dimensions(&png(1 << 30, 1 << 30)), None);
        assert_eq!(dimensions(&png(60_000, 60_000)), None, "3.6 gigapixels");
        let mut other_chunk_first = png(640, 480);
        other_chunk_first[12..16].copy_from_slice(b"tEXt");
        assert_eq!(dimensions(&other_chunk_first), None);
    }

    #[test]
    fn png_dimensions_are_read_from_the_header() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        png.extend_from_slice(&[8, 6, 0, 0, 0]);
        assert_eq!(dimensions(&png), Some((640, 480)));
        assert_eq!(dimensions(b"not an image"), None);
    }

    #[test]
    fn names_are_made_safe_for_headers_and_paths() {
        assert_eq!(sanitize_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_name("C:\\Users\\me\\cat.png"), "cat.png");
        assert_eq!(sanitize_name("a\"b;c\r\nd.txt"), "abcd.txt");
        assert_eq!(sanitize_name(".hidden"), "hidden");
        assert_eq!(sanitize_name("   "), "file");
        assert_eq!(sanitize_name(&"x".repeat(300)).len(), 255);
    }
}
