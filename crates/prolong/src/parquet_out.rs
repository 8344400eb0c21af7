//! Score records as Parquet (feature `parquet`): one row per document, the
//! same fields as a JSONL line, so a corpus pipeline can join scores onto its
//! data without parsing JSON. Written in one go, atomically (temporary file,
//! fsync, rename): `score` keeps a JSONL journal while it runs and converts it
//! at the end (see `run::score`).

use crate::run::ScoreRecord;
use crate::{ProlongError, Result};
use parquet::basic::Compression;
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;
use parquet::record::Field;
use parquet::schema::parser::parse_message_type;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

const SCHEMA: &str = "message scores {
    REQUIRED BYTE_ARRAY id (UTF8);
    REQUIRED BYTE_ARRAY status (UTF8);
    OPTIONAL DOUBLE lds;
    REQUIRED INT64 tokens;
    REQUIRED INT64 chunks;
    REQUIRED INT64 pairs;
    REQUIRED INT64 counted;
    OPTIONAL BYTE_ARRAY error (UTF8);
    OPTIONAL BYTE_ARRAY text (UTF8);
}";

/// Rows per row group: bounds the memory of one group's column buffers.
const ROWS_PER_GROUP: usize = 8192;

fn pq(path: &Path, e: impl std::fmt::Display) -> ProlongError {
    ProlongError::Input(format!("{}: Parquet: {e}", path.display()))
}

/// Writes `records` to `path` atomically.
pub fn write(path: &Path, records: &[ScoreRecord]) -> Result<()> {
    frugal_data::atomic::write_with(path, |w| {
        write_to(w, records).map_err(|e| frugal_data::Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("Parquet: {e}")),
        })
    })
    .map_err(|e| ProlongError::Input(e.to_string()))
}

fn write_to<W: Write + Send>(w: W, records: &[ScoreRecord]) -> parquet::errors::Result<()> {
    let schema = Arc::new(parse_message_type(SCHEMA)?);
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .build(),
    );
    let mut writer = SerializedFileWriter::new(w, schema, props)?;
    for group in records.chunks(ROWS_PER_GROUP) {
        let mut rg = writer.next_row_group()?;
        let mut column = 0;
        while let Some(mut col) = rg.next_column()? {
            write_column(col.untyped(), column, group)?;
            col.close()?;
            column += 1;
        }
        rg.close()?;
    }
    writer.close()?;
    Ok(())
}

/// Values and definition levels (1 = present) of an optional column.
fn optional<U>(
    group: &[ScoreRecord],
    get: impl Fn(&ScoreRecord) -> Option<U>,
) -> (Vec<U>, Vec<i16>) {
    let mut values = Vec::new();
    let levels = group
        .iter()
        .map(|r| match get(r) {
            Some(v) => {
                values.push(v);
                1
            }
            None => 0,
        })
        .collect();
    (values, levels)
}

fn write_column(
    col: &mut ColumnWriter<'_>,
    column: usize,
    group: &[ScoreRecord],
) -> parquet::errors::Result<()> {
    let strings = |f: fn(&ScoreRecord) -> &str| -> Vec<ByteArray> {
        group.iter().map(|r| ByteArray::from(f(r))).collect()
    };
    let ints =
        |f: fn(&ScoreRecord) -> usize| -> Vec<i64> { group.iter().map(|r| f(r) as i64).collect() };
    match (column, col) {
        (0, ColumnWriter::ByteArrayColumnWriter(c)) => {
            c.write_batch(&strings(|r| &r.id), None, None)?;
        }
        (1, ColumnWriter::ByteArrayColumnWriter(c)) => {
            c.write_batch(&strings(|r| &r.status), None, None)?;
        }
        (2, ColumnWriter::DoubleColumnWriter(c)) => {
            let (v, d) = optional(group, |r| r.lds);
            c.write_batch(&v, Some(&d), None)?;
        }
        (3..=6, ColumnWriter::Int64ColumnWriter(c)) => {
            let f: fn(&ScoreRecord) -> usize = match column {
                3 => |r| r.tokens,
                4 => |r| r.chunks,
                5 => |r| r.pairs,
                _ => |r| r.counted,
            };
            c.write_batch(&ints(f), None, None)?;
        }
        (7, ColumnWriter::ByteArrayColumnWriter(c)) => {
            let (v, d) = optional(group, |r| r.error.as_deref().map(ByteArray::from));
            c.write_batch(&v, Some(&d), None)?;
        }
        (8, ColumnWriter::ByteArrayColumnWriter(c)) => {
            let (v, d) = optional(group, |r| r.text.as_deref().map(ByteArray::from));
            c.write_batch(&v, Some(&d), None)?;
        }
        (k, _) => {
            return Err(parquet::errors::ParquetError::General(format!(
                "unexpected column {k} in the score schema"
            )))
        }
    }
    Ok(())
}

/// Every record (error records included) of a scores file written by
/// [`write`]. Columns other than `id` and `status` may be missing (a file
/// from another tool); unknown columns are ignored.
pub fn read(path: &Path) -> Result<Vec<ScoreRecord>> {
    let file = std::fs::File::open(path).map_err(|e| ProlongError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| pq(path, e))?;
    let rows = reader.get_row_iter(None).map_err(|e| pq(path, e))?;
    let mut out = Vec::new();
    for (k, row) in rows.enumerate() {
        let row = row.map_err(|e| pq(path, e))?;
        let bad = |name: &str, f: &Field| pq(path, format!("row {}: column `{name}`: {f}", k + 1));
        let mut r = ScoreRecord::default();
        let (mut has_id, mut has_status) = (false, false);
        for (name, field) in row.get_column_iter() {
            match (name.as_str(), field) {
                (_, Field::Null) => {}
                ("id", Field::Str(s)) => (r.id, has_id) = (s.clone(), true),
                ("status", Field::Str(s)) => (r.status, has_status) = (s.clone(), true),
                ("lds", Field::Double(x)) => r.lds = Some(*x),
                ("tokens" | "chunks" | "pairs" | "counted", Field::Long(n)) => {
                    let n = usize::try_from(*n).map_err(|_| bad(name, field))?;
                    match name.as_str() {
                        "tokens" => r.tokens = n,
                        "chunks" => r.chunks = n,
                        "pairs" => r.pairs = n,
                        _ => r.counted = n,
                    }
                }
                ("error", Field::Str(s)) => r.error = Some(s.clone()),
                ("text", Field::Str(s)) => r.text = Some(s.clone()),
                ("id" | "status" | "lds" | "tokens" | "chunks" | "pairs" | "counted", _)
                | ("error" | "text", _) => return Err(bad(name, field)),
                _ => {}
            }
        }
        if !has_id || !has_status {
            return Err(pq(
                path,
                format!("row {}: no `id` or `status`; not a scores file", k + 1),
            ));
        }
        out.push(r);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, lds: Option<f64>, text: Option<&str>) -> ScoreRecord {
        ScoreRecord {
            id: id.into(),
            status: if lds.is_some() { "ok" } else { "too_short" }.into(),
            lds,
            tokens: 300,
            chunks: 3,
            pairs: 3,
            counted: 2,
            error: lds.is_none().then(|| "1 chunk".to_string()),
            text: text.map(str::to_string),
        }
    }

    #[test]
    fn records_round_trip_with_nulls_and_many_row_groups() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.parquet");
        let mut rs: Vec<ScoreRecord> = (0..ROWS_PER_GROUP + 5)
            .map(|k| rec(&format!("d{k}"), Some(k as f64 * 0.5), None))
            .collect();
        rs.push(rec("bad", None, Some("tiny ünïcode")));
        write(&p, &rs).unwrap();
        assert_eq!(read(&p).unwrap(), rs);
        // Overwriting is atomic: no temporary file is left behind.
        write(&p, &rs[..2]).unwrap();
        assert_eq!(read(&p).unwrap(), rs[..2]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn not_a_scores_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.parquet");
        std::fs::write(&p, b"PAR1 not really").unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("Parquet"), "{e}");
    }
}
