//! Block copy for thick restores and clones: the source's bytes, then zeros
//! to the end of the target (recycled extents must not show through), then
//! `fsync`. Sizes are checked before a byte is written.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Copy unit: large enough for sequential device throughput, small enough
/// for the node's memory.
const CHUNK: usize = 4 << 20;

fn device_len(f: &mut File) -> io::Result<u64> {
    // Works for block devices (where metadata().len() is 0) and files alike.
    let len = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(len)
}

/// Copy the first `bytes` of `src` over `dst`, write zeros from there up to
/// `total`, and sync `dst`. Fails, before writing, when `src` is shorter than
/// `bytes` or `dst` shorter than `total` (or `total < bytes`).
pub(crate) fn copy_device(src: &Path, dst: &Path, bytes: u64, total: u64) -> io::Result<()> {
    let mut from = File::open(src)?;
    let mut to = OpenOptions::new().write(true).open(dst)?;
    let (src_len, dst_len) = (device_len(&mut from)?, device_len(&mut to)?);
    if src_len < bytes {
        return Err(io::Error::other(format!(
            "{} holds {src_len} bytes, {bytes} expected",
            src.display()
        )));
    }
    if dst_len < total || total < bytes {
        return Err(io::Error::other(format!(
            "{} holds {dst_len} bytes, at least {} needed",
            dst.display(),
            total.max(bytes)
        )));
    }
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < bytes {
        let n = (bytes - done).min(CHUNK as u64) as usize;
        from.read_exact(&mut buf[..n])?;
        to.write_all(&buf[..n])?;
        done += n as u64;
    }
    buf.fill(0);
    while done < total {
        let n = (total - done).min(CHUNK as u64) as usize;
        to.write_all(&buf[..n])?;
        done += n as u64;
    }
    to.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_then_zeroes_the_tail_and_checks_sizes() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("src"), d.path().join("dst"));
        let data: Vec<u8> = (0..(5 << 20) + 123).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src, &data).unwrap();
        std::fs::write(&dst, vec![0xAAu8; 9 << 20]).unwrap();
        copy_device(&src, &dst, data.len() as u64, 9 << 20).unwrap();
        let out = std::fs::read(&dst).unwrap();
        assert_eq!(out.len(), 9 << 20);
        assert_eq!(&out[..data.len()], &data[..]);
        assert!(
            out[data.len()..].iter().all(|b| *b == 0),
            "old bytes showed through"
        );

        let before = std::fs::read(&dst).unwrap();
        let e = copy_device(&src, &dst, (6 << 20) as u64, 9 << 20).unwrap_err();
        assert!(e.to_string().contains("expected"), "{e}");
        let e = copy_device(&src, &dst, 1 << 20, 10 << 20).unwrap_err();
        assert!(e.to_string().contains("needed"), "{e}");
        assert_eq!(
            std::fs::read(&dst).unwrap(),
            before,
            "a refused copy wrote nothing"
        );
    }
}
