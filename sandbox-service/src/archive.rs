//! A minimal ustar writer: the run's files travel into the container as a tar archive on the
//! stdin of an exec (a read-only root filesystem refuses `upload_to_container`). Only regular
//! files with validated names are written, so the archive can hold no links, devices or paths
//! outside the work directory.

use crate::request::{FileName, RESERVED_PREFIX};

const BLOCK: usize = 512;

/// Archive member the image's `run` script feeds to the program as stdin.
pub const STDIN_MEMBER: &str = ".autocrea-stdin";

/// Builds a tar archive holding `files` and, when `stdin` is not empty, the stdin member.
pub fn build<'a>(
    files: impl IntoIterator<Item = (&'a FileName, &'a [u8])>,
    stdin: &[u8],
) -> Vec<u8> {
    debug_assert!(STDIN_MEMBER.starts_with(RESERVED_PREFIX));
    let mut out = Vec::new();
    for (name, content) in files {
        append(&mut out, name.as_str(), content);
    }
    if !stdin.is_empty() {
        append(&mut out, STDIN_MEMBER, stdin);
    }
    // End of archive: two zero blocks.
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

fn append(out: &mut Vec<u8>, name: &str, content: &[u8]) {
    let mut header = [0u8; BLOCK];
    // FileName guarantees at most 100 bytes, the size of the name field.
    header[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 10001);
    octal(&mut header[116..124], 10001);
    octal(&mut header[124..136], content.len() as u64);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field filled with spaces.
    header[148..156].fill(b' ');
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    let digits = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(digits.as_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(content);
    let padding = (BLOCK - content.len() % BLOCK) % BLOCK;
    out.resize(out.len() + padding, 0);
}

/// Writes `value` as zero-padded octal digits followed by NUL, filling `field`.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let digits = format!("{value:0width$o}");
    field[..width].copy_from_slice(&digits.as_bytes()[digits.len() - width..]);
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_aligned_and_checksummed() {
        let name = FileName::parse("src/main.py").unwrap();
        let archive = build([(&name, b"print(1)\n".as_slice())], b"input");
        // 2 headers + 2 content blocks + 2 end blocks.
        assert_eq!(archive.len(), 6 * BLOCK);
        assert_eq!(&archive[..11], b"src/main.py");
        assert_eq!(&archive[124..136], b"00000000011\0");
        let mut header = archive[..BLOCK].to_vec();
        header[148..156].fill(b' ');
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(&archive[148..154], format!("{sum:06o}").as_bytes());
    }
}
