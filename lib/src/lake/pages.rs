//! The Parquet writer of ingest's files: the text columns' pages are encoded here, the rest
//! by arrow-rs.
//!
//! 45 of the lake's 56 columns are optional strings, and in ingest's files most of them
//! repeat the row before (an object's rows share the account, the region, the principal,
//! the source object). arrow-rs's `ArrowWriter` hashes every value of a dictionary column
//! into its dictionary; [`TextChunk`] compares a value with the row before first and
//! hashes it only when it differs, and writes the pages straight from the batch's string
//! buffers. The booleans, timestamps, the integer, the maps and the list still go through
//! arrow-rs's column writers, and every column chunk through its file writer, so the file
//! layout, the footer and the row groups are arrow-rs's.
//!
//! The pages are those `ArrowWriter` writes with the same properties: data pages v1,
//! definition levels in the RLE/bit-packed hybrid, `RLE_DICTIONARY` indices after a `PLAIN`
//! dictionary page (falling back to `PLAIN` values once the dictionary passes its size
//! limit), `PLAIN` values in a column without dictionary, zstd where the properties say,
//! and page breaks at the properties' row and byte limits. The tests below compare what
//! arrow-rs reads back from this writer's files and `ArrowWriter`'s; the lake's tests read
//! ingest's files with DuckDB and PyPI `deltalake`.

use std::collections::HashMap;
use std::io::Write;

use arrow::array::{Array, AsArray, StringArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{
    ArrowColumnWriter, ArrowRowGroupWriterFactory, ArrowWriterOptions, compute_leaves,
};
use parquet::basic::{Compression, Encoding, EncodingMask, PageType};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{ColumnChunkMetaData, PageEncodingStats};
use parquet::file::properties::{EnabledStatistics, WriterProperties, WriterVersion};
use parquet::file::writer::{SerializedFileWriter, SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;

/// Writes rows of the lake's schema to one Parquet file with ingest's properties. The
/// methods are those of `ArrowWriter` that ingest uses.
pub struct IngestWriter<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// Leaf columns of each field, in schema order.
    leaves: Vec<std::ops::Range<usize>>,
    /// Whether each field's pages are [`TextChunk`]'s.
    ours: Vec<bool>,
    group: Option<RowGroup>,
}

impl<W: Write + Send> std::fmt::Debug for IngestWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestWriter")
            .field("row_groups", &self.file.flushed_row_groups().len())
            .finish_non_exhaustive()
    }
}

/// The row group being written.
struct RowGroup {
    rows: usize,
    columns: Vec<FieldWriter>,
}

/// How one field's leaves are encoded.
enum FieldWriter {
    Text(Box<TextChunk>),
    Arrow(Vec<ArrowColumnWriter>),
}

impl<W: Write + Send> IngestWriter<W> {
    /// A writer of `schema` with `options` (its properties and Parquet schema), as
    /// `ArrowWriter::try_new_with_options` would make it.
    pub fn try_new(w: W, schema: SchemaRef, options: ArrowWriterOptions) -> Result<Self> {
        let (file, factory) = ArrowWriter::try_new_with_options(w, schema.clone(), options)?
            .into_serialized_writer()?;
        let props = file.properties();
        let descr = file.schema_descr();
        let mut leaves = Vec::with_capacity(schema.fields().len());
        let mut next = 0;
        for field in schema.fields() {
            let start = next;
            while next < descr.num_columns()
                && descr.column(next).path().parts().first() == Some(field.name())
            {
                next += 1;
            }
            if next == start {
                return Err(ParquetError::General(format!(
                    "no Parquet column for field {}",
                    field.name()
                )));
            }
            leaves.push(start..next);
        }
        let file_ok = props.offset_index_disabled()
            && props.writer_version() == WriterVersion::PARQUET_1_0
            && props.content_defined_chunking().is_none()
            && descr
                .columns()
                .iter()
                .all(|c| props.statistics_enabled(c.path()) != EnabledStatistics::Page);
        let ours = schema
            .fields()
            .iter()
            .zip(&leaves)
            .map(|(field, leaves)| {
                file_ok
                    && field.data_type() == &DataType::Utf8
                    && leaves.len() == 1
                    && TextChunk::supports(&descr.column(leaves.start), props)
            })
            .collect();
        Ok(IngestWriter {
            file,
            factory,
            schema,
            leaves,
            ours,
            group: None,
        })
    }

    fn new_group(&self) -> Result<RowGroup> {
        let mut arrow = self
            .factory
            .create_column_writers(self.file.flushed_row_groups().len())?
            .into_iter();
        let descr = self.file.schema_descr();
        let mut columns = Vec::with_capacity(self.leaves.len());
        for (leaves, &ours) in self.leaves.iter().zip(&self.ours) {
            let writers: Vec<ArrowColumnWriter> = arrow.by_ref().take(leaves.len()).collect();
            columns.push(if ours {
                FieldWriter::Text(Box::new(TextChunk::new(
                    descr.column(leaves.start),
                    self.file.properties(),
                )))
            } else {
                FieldWriter::Arrow(writers)
            });
        }
        Ok(RowGroup { rows: 0, columns })
    }

    /// Writes a batch of the writer's schema, flushing row groups at the properties'
    /// row and byte limits as `ArrowWriter` does.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if self.group.is_none() {
            self.group = Some(self.new_group()?);
        }
        let buffered = self.in_progress_rows();
        let props = self.file.properties();
        let (max_rows, max_bytes) = (props.max_row_group_row_count(), props.max_row_group_bytes());
        if let Some(max) = max_rows
            && buffered + batch.num_rows() > max
        {
            let fits = max - buffered;
            self.write(&batch.slice(0, fits))?;
            self.flush()?;
            return self.write(&batch.slice(fits, batch.num_rows() - fits));
        }
        if let Some(max) = max_bytes
            && buffered > 0
        {
            let bytes = self.in_progress_size();
            if bytes >= max {
                self.flush()?;
                return self.write(batch);
            }
            let per_row = (bytes / buffered).max(1);
            let fits = (max - bytes) / per_row;
            if batch.num_rows() > fits {
                if fits == 0 {
                    self.flush()?;
                    return self.write(batch);
                }
                self.write(&batch.slice(0, fits))?;
                return self.write(&batch.slice(fits, batch.num_rows() - fits));
            }
        }
        let Some(group) = self.group.as_mut() else {
            return Err(ParquetError::General("no row group".into()));
        };
        for ((field, column), writer) in self
            .schema
            .fields()
            .iter()
            .zip(batch.columns())
            .zip(&mut group.columns)
        {
            match writer {
                FieldWriter::Text(chunk) => chunk.write(column.as_string::<i32>())?,
                FieldWriter::Arrow(writers) => {
                    for (w, leaf) in writers.iter_mut().zip(compute_leaves(field, column)?) {
                        w.write(&leaf)?;
                    }
                }
            }
        }
        group.rows += batch.num_rows();
        Ok(())
    }

    /// Rows buffered in the open row group.
    pub fn in_progress_rows(&self) -> usize {
        self.group.as_ref().map_or(0, |g| g.rows)
    }

    /// The open row group's anticipated encoded size.
    pub fn in_progress_size(&self) -> usize {
        let Some(group) = &self.group else { return 0 };
        group
            .columns
            .iter()
            .map(|c| match c {
                FieldWriter::Text(chunk) => chunk.encoded_size(),
                FieldWriter::Arrow(ws) => ws.iter().map(|w| w.get_estimated_total_bytes()).sum(),
            })
            .sum()
    }

    /// Writes the open row group to the file.
    pub fn flush(&mut self) -> Result<()> {
        let Some(group) = self.group.take() else {
            return Ok(());
        };
        if group.rows == 0 {
            return Ok(());
        }
        let mut out = self.file.next_row_group()?;
        for column in group.columns {
            match column {
                FieldWriter::Text(chunk) => {
                    let (bytes, close) = chunk.close()?;
                    out.append_column(&bytes, close)?;
                }
                FieldWriter::Arrow(writers) => {
                    for w in writers {
                        w.close()?.append_to_row_group(&mut out)?;
                    }
                }
            }
        }
        out.close()?;
        Ok(())
    }

    /// Flushes and writes the footer.
    pub fn close(mut self) -> Result<()> {
        self.flush()?;
        self.file.close()?;
        Ok(())
    }

    /// Flushes, writes the footer and returns the sink.
    pub fn into_inner(mut self) -> Result<W> {
        self.flush()?;
        self.file.into_inner()
    }
}

/// One optional UTF-8 column's chunk of a row group, encoded as `ArrowWriter` encodes it.
pub(crate) struct TextChunk {
    descr: ColumnDescPtr,
    codec: Compression,
    page_rows: usize,
    page_bytes: usize,
    dict_limit: usize,
    /// The dictionary, when the column has one (kept after a fallback: its page comes first).
    dict: Option<Dict>,
    /// Whether new values still go to the dictionary.
    dict_open: bool,
    /// The page being built: a definition level per row, and the values of the rows that
    /// are not null (dictionary keys, or `PLAIN` bytes).
    levels: Vec<u8>,
    keys: Vec<u32>,
    plain: Vec<u8>,
    /// Finished data pages, headers included.
    data: TrackedWrite<Vec<u8>>,
    /// A page's body before compression, reused.
    body: Vec<u8>,
    rows: u64,
    compressed: u64,
    uncompressed: u64,
    /// Data page encodings in file order, with their counts.
    page_encodings: Vec<(Encoding, i32)>,
}

/// A column chunk's dictionary: its `PLAIN` page, where each entry lies in it, and the
/// index by value. `last` is the key of the row before, compared before any hashing.
#[derive(Default)]
struct Dict {
    page: Vec<u8>,
    spans: Vec<(usize, usize)>,
    index: HashMap<Box<[u8]>, u32, ahash::RandomState>,
    last: Option<u32>,
}

impl Dict {
    fn value(&self, key: u32) -> &[u8] {
        let (start, len) = self.spans[key as usize];
        &self.page[start..start + len]
    }

    fn key(&mut self, v: &[u8]) -> u32 {
        if let Some(last) = self.last
            && self.value(last) == v
        {
            return last;
        }
        let key = match self.index.get(v) {
            Some(&k) => k,
            None => {
                let k = self.spans.len() as u32;
                self.page.extend_from_slice(&(v.len() as u32).to_le_bytes());
                self.spans.push((self.page.len(), v.len()));
                self.page.extend_from_slice(v);
                self.index.insert(v.into(), k);
                k
            }
        };
        self.last = Some(key);
        key
    }

    fn bit_width(&self) -> u8 {
        bit_width(self.spans.len().saturating_sub(1) as u32)
    }
}

impl TextChunk {
    /// Whether a column's properties ask for nothing this encoder leaves out: statistics,
    /// a bloom filter, an encoding other than `PLAIN` after the dictionary, a codec other
    /// than zstd. The file's other conditions (no page index, format 1.0 pages, no
    /// content-defined chunking) are checked by [`IngestWriter::try_new`].
    fn supports(descr: &ColumnDescPtr, props: &WriterProperties) -> bool {
        let path = descr.path();
        descr.max_def_level() == 1
            && descr.max_rep_level() == 0
            && props.statistics_enabled(path) == EnabledStatistics::None
            && props.bloom_filter_properties(path).is_none()
            && matches!(props.encoding(path), None | Some(Encoding::PLAIN))
            && matches!(
                props.compression(path),
                Compression::UNCOMPRESSED | Compression::ZSTD(_)
            )
    }

    pub(crate) fn new(descr: ColumnDescPtr, props: &WriterProperties) -> Self {
        let path = descr.path();
        let dictionary = props.dictionary_enabled(path);
        TextChunk {
            codec: props.compression(path),
            page_rows: props.data_page_row_count_limit(),
            page_bytes: props.data_page_size_limit(),
            dict_limit: props.dictionary_page_size_limit(),
            dict: dictionary.then(Dict::default),
            dict_open: dictionary,
            descr,
            levels: Vec::new(),
            keys: Vec::new(),
            plain: Vec::new(),
            data: TrackedWrite::new(Vec::new()),
            body: Vec::new(),
            rows: 0,
            compressed: 0,
            uncompressed: 0,
            page_encodings: Vec::new(),
        }
    }

    pub(crate) fn write(&mut self, array: &StringArray) -> Result<()> {
        let offsets = array.value_offsets();
        let data = array.value_data();
        let nulls = array.nulls();
        for i in 0..array.len() {
            if nulls.is_some_and(|n| n.is_null(i)) {
                self.levels.push(0);
            } else {
                let v = &data[offsets[i] as usize..offsets[i + 1] as usize];
                self.levels.push(1);
                match &mut self.dict {
                    Some(dict) if self.dict_open => {
                        self.keys.push(dict.key(v));
                        if dict.page.len() >= self.dict_limit {
                            // As arrow-rs falls back: the page so far keeps its keys,
                            // later values are PLAIN.
                            self.flush_page()?;
                            self.dict_open = false;
                            continue;
                        }
                    }
                    _ => {
                        self.plain
                            .extend_from_slice(&(v.len() as u32).to_le_bytes());
                        self.plain.extend_from_slice(v);
                    }
                }
            }
            if self.levels.len() >= self.page_rows || self.plain.len() >= self.page_bytes {
                self.flush_page()?;
            }
        }
        Ok(())
    }

    /// The chunk's anticipated encoded size: pages written, the dictionary, the open page.
    pub(crate) fn encoded_size(&self) -> usize {
        let (dict, width) = self
            .dict
            .as_ref()
            .map_or((0, 0), |d| (d.page.len(), usize::from(d.bit_width())));
        self.data.bytes_written()
            + dict
            + self.levels.len().div_ceil(8)
            + (self.keys.len() * width).div_ceil(8)
            + self.plain.len()
    }

    fn flush_page(&mut self) -> Result<()> {
        let rows = self.levels.len();
        if rows == 0 {
            return Ok(());
        }
        let body = &mut self.body;
        body.clear();
        // Definition levels, v1: their length, then the hybrid encoding (bit width 1).
        body.extend_from_slice(&[0; 4]);
        hybrid(body, &self.levels, 1);
        let len = (body.len() - 4) as u32;
        body[..4].copy_from_slice(&len.to_le_bytes());
        let encoding = match (&self.dict, self.dict_open) {
            (Some(dict), true) => {
                let width = dict.bit_width();
                body.push(width);
                hybrid(body, &self.keys, width);
                Encoding::RLE_DICTIONARY
            }
            _ => {
                body.extend_from_slice(&self.plain);
                Encoding::PLAIN
            }
        };
        let page = Page::DataPage {
            buf: compress(self.codec, body)?,
            num_values: rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let spec = SerializedPageWriter::new(&mut self.data)
            .write_page(CompressedPage::new(page, body.len()))?;
        self.compressed += spec.compressed_size as u64;
        self.uncompressed += spec.uncompressed_size as u64;
        self.rows += rows as u64;
        match self.page_encodings.last_mut() {
            Some((e, n)) if *e == encoding => *n += 1,
            _ => self.page_encodings.push((encoding, 1)),
        }
        self.levels.clear();
        self.keys.clear();
        self.plain.clear();
        Ok(())
    }

    /// Finishes the chunk: its bytes (dictionary page first) and what the row group needs
    /// to append them.
    pub(crate) fn close(mut self) -> Result<(Bytes, ColumnCloseResult)> {
        self.flush_page()?;
        let mut out = TrackedWrite::new(Vec::with_capacity(
            self.data.bytes_written() + self.dict.as_ref().map_or(0, |d| d.page.len()) + 64,
        ));
        let mut stats = Vec::new();
        let mut encodings = vec![Encoding::RLE];
        let mut dictionary_page_offset = None;
        if let Some(dict) = &self.dict {
            let page = Page::DictionaryPage {
                buf: compress(self.codec, &dict.page)?,
                num_values: dict.spans.len() as u32,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            };
            let spec = SerializedPageWriter::new(&mut out)
                .write_page(CompressedPage::new(page, dict.page.len()))?;
            self.compressed += spec.compressed_size as u64;
            self.uncompressed += spec.uncompressed_size as u64;
            dictionary_page_offset = Some(0);
            encodings.push(Encoding::PLAIN);
            stats.push(PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            });
        }
        let data_page_offset = out.bytes_written() as i64;
        for &(encoding, count) in &self.page_encodings {
            encodings.push(encoding);
            stats.push(PageEncodingStats {
                page_type: PageType::DATA_PAGE,
                encoding,
                count,
            });
        }
        // The sink buffers what it is given.
        self.data.flush()?;
        out.write_all(self.data.inner())?;
        let metadata = ColumnChunkMetaData::builder(self.descr)
            .set_compression(self.codec)
            .set_encodings_mask(EncodingMask::new_from_encodings(encodings.iter()))
            .set_page_encoding_stats(stats)
            .set_total_compressed_size(self.compressed as i64)
            .set_total_uncompressed_size(self.uncompressed as i64)
            .set_num_values(self.rows as i64)
            .set_data_page_offset(data_page_offset)
            .set_dictionary_page_offset(dictionary_page_offset)
            .build()?;
        let bytes = Bytes::from(out.into_inner()?);
        Ok((
            bytes.clone(),
            ColumnCloseResult {
                bytes_written: bytes.len() as u64,
                rows_written: self.rows,
                metadata,
                bloom_filter: None,
                column_index: None,
                offset_index: None,
            },
        ))
    }
}

/// A page body compressed with the column's codec (ingest uses zstd or nothing).
fn compress(codec: Compression, body: &[u8]) -> Result<Bytes> {
    match codec {
        Compression::UNCOMPRESSED => Ok(Bytes::copy_from_slice(body)),
        Compression::ZSTD(level) => ZSTD.with_borrow_mut(|z| {
            let z = match z {
                Some(z) if z.0 == level.compression_level() => &mut z.1,
                z => {
                    let c = zstd::bulk::Compressor::new(level.compression_level())
                        .map_err(|e| ParquetError::External(Box::new(e)))?;
                    &mut z.insert((level.compression_level(), c)).1
                }
            };
            z.compress(body)
                .map(Bytes::from)
                .map_err(|e| ParquetError::External(Box::new(e)))
        }),
        other => Err(ParquetError::NYI(format!(
            "codec {other} in ingest's text columns"
        ))),
    }
}

thread_local! {
    /// One zstd context per thread (and level): a context is some hundreds of KB.
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Bits needed for values up to `max`.
fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// Groups of 8 values in one bit-packed run at most, so that its header is one byte.
const MAX_PACKED_GROUPS: usize = 63;

/// Appends `values` in Parquet's RLE/bit-packed hybrid encoding with `width` bits each:
/// runs of 8 or more equal values as RLE runs, the rest bit-packed in groups of 8 (the
/// last group padded with zeros, as the encoding allows at the end).
fn hybrid<T: Copy + Into<u32> + PartialEq>(out: &mut Vec<u8>, values: &[T], width: u8) {
    let mut literal_start = 0;
    let mut i = 0;
    while i < values.len() {
        let v = values[i];
        let mut j = i + 1;
        while j < values.len() && values[j] == v {
            j += 1;
        }
        if j - i >= 8 {
            // The literals before the run take values from it to fill their last group.
            let mut run_start = i;
            let pending = i - literal_start;
            if pending > 0 {
                let fill = (8 - pending % 8) % 8;
                run_start += fill;
                packed(out, &values[literal_start..run_start], width);
            }
            // At most 7 values lent, so at least one is left for the run.
            rle(out, v.into(), j - run_start, width);
            literal_start = j;
        }
        i = j;
    }
    if literal_start < values.len() {
        packed(out, &values[literal_start..], width);
    }
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn rle(out: &mut Vec<u8>, value: u32, count: usize, width: u8) {
    varint(out, (count as u64) << 1);
    out.extend_from_slice(&value.to_le_bytes()[..usize::from(width).div_ceil(8)]);
}

/// Bit-packed runs of `values` (a multiple of 8 of them, or the stream's last ones).
fn packed<T: Copy + Into<u32>>(out: &mut Vec<u8>, values: &[T], width: u8) {
    for run in values.chunks(MAX_PACKED_GROUPS * 8) {
        let groups = run.len().div_ceil(8);
        varint(out, ((groups as u64) << 1) | 1);
        let mut acc: u64 = 0;
        let mut bits = 0u32;
        for k in 0..groups * 8 {
            let v: u32 = run.get(k).map_or(0, |&v| v.into());
            acc |= u64::from(v) << bits;
            bits += u32::from(width);
            while bits >= 8 {
                out.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        debug_assert_eq!(bits, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ArrayRef, Int64Array, ListBuilder, StringBuilder};
    use arrow::datatypes::{Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use parquet::basic::ZstdLevel;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::schema::types::ColumnPath;
    use proptest::prelude::*;
    use std::sync::Arc;

    /// Text columns of every kind ingest has (a dictionary or not, zstd or not), beside
    /// columns arrow-rs writes (a number, a list of text).
    fn schema() -> SchemaRef {
        let text = |name: &str| Field::new(name, DataType::Utf8, true);
        Arc::new(Schema::new(vec![
            text("dict_zstd"),
            Field::new("n", DataType::Int64, true),
            text("plain_zstd"),
            Field::new(
                "items",
                DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                true,
            ),
            text("dict"),
            text("plain"),
        ]))
    }

    /// Small limits, so that a few hundred rows cross every one of them: pages by rows and
    /// by bytes, the dictionary's fallback, row groups by rows.
    fn props(small: bool) -> WriterProperties {
        let path = |c: &str| ColumnPath::from(c);
        let zstd = Compression::ZSTD(ZstdLevel::try_new(1).expect("zstd level 1"));
        let mut b = WriterProperties::builder()
            .set_statistics_enabled(EnabledStatistics::None)
            .set_offset_index_disabled(true)
            .set_column_compression(path("dict_zstd"), zstd)
            .set_column_compression(path("plain_zstd"), zstd)
            .set_column_dictionary_enabled(path("plain_zstd"), false)
            .set_column_dictionary_enabled(path("plain"), false);
        if small {
            b = b
                .set_data_page_row_count_limit(37)
                .set_data_page_size_limit(300)
                .set_dictionary_page_size_limit(200)
                .set_max_row_group_row_count(Some(150));
        }
        b.build()
    }

    type Row = (Option<String>, Option<i64>, Option<Vec<Option<String>>>);

    fn batch(rows: &[Row]) -> RecordBatch {
        let text: StringArray = rows.iter().map(|r| r.0.as_deref()).collect();
        let n: Int64Array = rows.iter().map(|r| r.1).collect();
        let mut items = ListBuilder::new(StringBuilder::new());
        for r in rows {
            match &r.2 {
                Some(v) => {
                    for s in v {
                        items.values().append_option(s.as_deref());
                    }
                    items.append(true);
                }
                None => items.append(false),
            }
        }
        // The same text in every text column: each is encoded its own way.
        let text: ArrayRef = Arc::new(text);
        RecordBatch::try_new(
            schema(),
            vec![
                text.clone(),
                Arc::new(n),
                text.clone(),
                Arc::new(items.finish()),
                text.clone(),
                text,
            ],
        )
        .expect("batch")
    }

    fn options(props: &WriterProperties) -> ArrowWriterOptions {
        ArrowWriterOptions::new()
            .with_properties(props.clone())
            .with_skip_arrow_metadata(true)
    }

    fn ours(batches: &[RecordBatch], props: &WriterProperties) -> Bytes {
        let mut w = IngestWriter::try_new(Vec::new(), schema(), options(props)).expect("writer");
        // The text columns are this module's unless the properties ask for a page index.
        let text = props.offset_index_disabled();
        assert_eq!(w.ours, [text, false, text, false, text, text]);
        for b in batches {
            w.write(b).expect("write");
        }
        Bytes::from(w.into_inner().expect("close"))
    }

    fn arrow_rs(batches: &[RecordBatch], props: &WriterProperties) -> Bytes {
        let mut w = ArrowWriter::try_new_with_options(Vec::new(), schema(), options(props))
            .expect("writer");
        for b in batches {
            w.write(b).expect("write");
        }
        Bytes::from(w.into_inner().expect("close"))
    }

    fn read(file: &Bytes) -> RecordBatch {
        let reader = ParquetRecordBatchReaderBuilder::try_new(file.clone())
            .and_then(|b| b.build())
            .expect("reader");
        let batches: Vec<RecordBatch> = reader.map(|b| b.expect("read")).collect();
        arrow::compute::concat_batches(&schema(), &batches).expect("concat")
    }

    /// Per column chunk: its codec, encodings, values and whether it has a dictionary page.
    fn chunks(file: &Bytes) -> Vec<String> {
        let reader = SerializedFileReader::new(file.clone()).expect("footer");
        let mut out = Vec::new();
        for rg in reader.metadata().row_groups() {
            for c in rg.columns() {
                out.push(format!(
                    "{} {:?} {:?} {} dict={}",
                    c.column_path(),
                    c.compression(),
                    c.encodings().collect::<Vec<_>>(),
                    c.num_values(),
                    c.dictionary_page_offset().is_some()
                ));
            }
        }
        out
    }

    fn check(rows: &[Row], cuts: &[usize], small: bool) {
        let mut batches = Vec::new();
        let mut at = 0;
        for &cut in cuts.iter().chain([&rows.len()]) {
            let cut = cut.clamp(at, rows.len());
            batches.push(batch(&rows[at..cut]));
            at = cut;
        }
        let props = props(small);
        let (ours, theirs) = (ours(&batches, &props), arrow_rs(&batches, &props));
        assert_eq!(read(&ours), read(&theirs));
        assert_eq!(read(&ours), batch(rows));
        if !small {
            // With pages and row groups cut the same way, the chunks match too.
            assert_eq!(chunks(&ours), chunks(&theirs));
        }
    }

    fn text(i: usize, alphabet: usize, null_every: usize) -> Option<String> {
        (null_every == 0 || !i.is_multiple_of(null_every)).then(|| format!("v{}", i % alphabet))
    }

    fn rows(n: usize, alphabet: usize, null_every: usize) -> Vec<Row> {
        (0..n)
            .map(|i| {
                (
                    text(i / 3, alphabet, null_every),
                    (i % 5 != 0).then_some(i as i64),
                    (i % 4 != 0).then(|| vec![text(i, 3, 2), None]),
                )
            })
            .collect()
    }

    #[test]
    fn columns_of_every_shape_read_back_as_arrow_rs_writes_them() {
        // Runs and repeats, all distinct (the dictionary falls back), every row null,
        // no row null, empty strings.
        for (n, alphabet, null_every) in [
            (500, 4, 7),
            (500, 100_000, 0),
            (300, 3, 1),
            (1, 1, 0),
            (70, 1, 0),
            (9, 2, 2),
        ] {
            for small in [true, false] {
                check(&rows(n, alphabet, null_every), &[3, 200, 201], small);
            }
        }
        let empty: Vec<Row> = (0..50).map(|_| (Some(String::new()), None, None)).collect();
        check(&empty, &[], false);
    }

    #[test]
    fn a_page_index_leaves_the_text_columns_to_arrow_rs() {
        let props = WriterProperties::builder()
            .set_dictionary_page_size_limit(100)
            .build();
        let batches = [batch(&rows(300, 50, 4))];
        let file = ours(&batches, &props);
        assert_eq!(read(&file), batches[0]);
        assert_eq!(chunks(&file), chunks(&arrow_rs(&batches, &props)));
    }

    #[test]
    fn big_files_match_arrow_rs_chunk_for_chunk() {
        // Beyond a page of 2,048 rows and the 1 MB dictionary limit, in 1,024-row writes.
        let rows: Vec<Row> = (0..20_000)
            .map(|i| {
                let v = format!("{:0>120}", i / 2);
                (Some(v), Some(i as i64), None)
            })
            .collect();
        let cuts: Vec<usize> = (1..20).map(|k| k * 1024).collect();
        check(&rows, &cuts, false);
    }

    #[test]
    fn hybrid_runs_pad_only_the_last_group() {
        // Two values, then a run of 11 that lends 6 of its values to fill their group.
        let mut out = Vec::new();
        hybrid(&mut out, &[1u8, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], 1);
        assert_eq!(out, vec![0b11, 0b1111_1101, 5 << 1, 1]);
        let mut out = Vec::new();
        hybrid(&mut out, &[2u32, 3, 4], 3);
        // One group: 2 | 3 << 3 | 4 << 6 in three bytes.
        assert_eq!(out, vec![0b11, 0b0001_1010, 0b1, 0]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_rows_read_back_as_arrow_rs_writes_them(
            values in proptest::collection::vec(
                (proptest::option::weighted(0.8, "[a-c]{0,3}"), any::<Option<i64>>()),
                0..400,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..4),
            small in any::<bool>(),
        ) {
            let rows: Vec<Row> = values.into_iter().map(|(s, n)| (s, n, None)).collect();
            let mut cuts = cuts;
            cuts.sort_unstable();
            check(&rows, &cuts, small);
        }
    }
}
