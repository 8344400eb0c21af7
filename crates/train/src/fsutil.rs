//! Durable file writes: temp file, fsync, rename, fsync of the directory.

use crate::{Result, TrainError};
use std::fs::{self, File};
use std::path::Path;

/// Writes `bytes` to `path` so that a crash leaves either the old file or the
/// complete new one, never a torn one (frugal-data's temp file + fsync +
/// rename + directory fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(frugal_data::atomic::write_bytes(path, bytes)?)
}

/// fsyncs a file that was written by someone else (safetensors writers).
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(path, e))
}

/// fsyncs a directory so that renames inside it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| TrainError::io(dir, e))
}

/// Creates a directory (and parents), reporting unwritable locations clearly.
pub fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))
}
