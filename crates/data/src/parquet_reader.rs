//! Parquet input (feature `parquet`): one document per row, text from a
//! string column, as data sets on model hubs are commonly shipped.

use crate::documents::Document;
use crate::error::{Error, Result};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use parquet::schema::types::Type;
use std::path::Path;
use std::sync::Arc;

/// Appends the rows of `path` to `docs`, text from column `text_field`,
/// id `file:row` (1-based). Only that column is decoded.
pub fn read(path: &Path, text_field: &str, docs: &mut Vec<Document>) -> Result<()> {
    let parquet_err = |row: usize, e: parquet::errors::ParquetError| Error::Parse {
        path: path.to_path_buf(),
        line: row,
        message: format!("Parquet: {e}"),
    };
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(|e| parquet_err(0, e))?;
    let schema = reader.metadata().file_metadata().schema();
    let Some(column) = schema
        .get_fields()
        .iter()
        .find(|f| f.name() == text_field)
        .cloned()
    else {
        return Err(Error::Parse {
            path: path.to_path_buf(),
            line: 0,
            message: format!("no column `{text_field}`"),
        });
    };
    let projection = Type::group_type_builder(schema.name())
        .with_fields(vec![Arc::clone(&column)])
        .build()
        .map_err(|e| parquet_err(0, e))?;
    let rows = reader
        .get_row_iter(Some(projection))
        .map_err(|e| parquet_err(0, e))?;
    for (i, row) in rows.enumerate() {
        let row_no = i + 1;
        let row = row.map_err(|e| parquet_err(row_no, e))?;
        for (_, field) in row.get_column_iter() {
            match field {
                Field::Str(text) if !text.trim().is_empty() => docs.push(Document {
                    id: format!("{}:{row_no}", path.display()),
                    text: text.clone(),
                }),
                Field::Str(_) | Field::Null => {}
                other => {
                    return Err(Error::Parse {
                        path: path.to_path_buf(),
                        line: row_no,
                        message: format!("column `{text_field}` is not a string: {other}"),
                    })
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::data_type::{ByteArray, ByteArrayType};
    use parquet::file::properties::WriterProperties;
    use parquet::file::writer::SerializedFileWriter;
    use parquet::schema::parser::parse_message_type;

    fn write_parquet(path: &Path, texts: &[&str]) {
        let schema = Arc::new(
            parse_message_type(
                "message schema { REQUIRED INT64 n; REQUIRED BYTE_ARRAY text (UTF8); }",
            )
            .unwrap(),
        );
        let props = Arc::new(
            WriterProperties::builder()
                .set_compression(parquet::basic::Compression::SNAPPY)
                .build(),
        );
        let file = std::fs::File::create(path).unwrap();
        let mut writer = SerializedFileWriter::new(file, schema, props).unwrap();
        let mut group = writer.next_row_group().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        let ns: Vec<i64> = (0..texts.len() as i64).collect();
        col.typed::<parquet::data_type::Int64Type>()
            .write_batch(&ns, None, None)
            .unwrap();
        col.close().unwrap();
        let mut col = group.next_column().unwrap().unwrap();
        let values: Vec<ByteArray> = texts.iter().map(|t| ByteArray::from(*t)).collect();
        col.typed::<ByteArrayType>()
            .write_batch(&values, None, None)
            .unwrap();
        col.close().unwrap();
        group.close().unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn rows_become_documents() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("d.parquet");
        write_parquet(&p, &["To be, or not to be", "  ", "that is the question"]);
        let docs = crate::load_documents(std::slice::from_ref(&p), "text").unwrap();
        let texts: Vec<&str> = docs.iter().map(|d| d.text.as_str()).collect();
        assert_eq!(texts, ["To be, or not to be", "that is the question"]);
        assert_eq!(docs[1].id, format!("{}:3", p.display()));

        let err = crate::load_documents(std::slice::from_ref(&p), "body").unwrap_err();
        assert!(err.to_string().contains("no column `body`"), "{err}");
        let err = crate::load_documents(&[p], "n").unwrap_err();
        assert!(err.to_string().contains("not a string"), "{err}");
    }
}
