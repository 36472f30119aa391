//! The gzipped tarball Railway's `up` takes, built as the Railway CLI builds it: one regular-file
//! entry per project file, named by its path in the project (the CLI passes `./<path>`, whose
//! `./` the tar writer drops), gzip-compressed.

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use super::DeployFile;

/// The files as a `.tar.gz`; regular files, mode 0644, a fixed time (so the same files make the
/// same bytes).
pub fn tarball(files: &[DeployFile]) -> std::io::Result<Bytes> {
    let mut archive = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    for file in files {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(file.content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        // `append_data` writes long paths as GNU long-name entries and sets the checksum.
        archive.append_data(&mut header, &file.path, &file.content[..])?;
    }
    Ok(Bytes::from(archive.into_inner()?.finish()?))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn every_file_is_an_entry_named_from_the_root() {
        let long = format!("{}/deep.txt", "d".repeat(120));
        let files = [
            DeployFile::new("index.html", Bytes::from_static(b"<h1>hi</h1>")),
            DeployFile::new(long.clone(), Bytes::from_static(b"deep")),
        ];
        let gz = tarball(&files).unwrap();
        assert_eq!(&gz[..2], &[0x1f, 0x8b], "gzip");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&gz[..]));
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut content = String::new();
            entry.read_to_string(&mut content).unwrap();
            seen.push((entry.path().unwrap().display().to_string(), content));
        }
        assert_eq!(
            seen,
            [
                ("index.html".to_string(), "<h1>hi</h1>".to_string()),
                (long, "deep".to_string())
            ]
        );
        assert_eq!(tarball(&files).unwrap(), gz, "same files, same bytes");
    }
}
