//! Accumulates [`KmsEvent`]s into Arrow record batches of the `kms_events` schema.
//!
//! The columns are plain vectors that keep their capacity from one batch to the next (and,
//! through [`with_builder`], from one object to the next on a thread), and are copied into
//! Arrow arrays when a batch is finished: all of a batch's arrays share one allocation
//! (`Arena`). Arrow's own builders hand their buffers over on
//! `finish` and start again from nothing, which for the many small batches of CloudTrail's
//! small objects cost more than the rows themselves.

use std::cell::RefCell;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, ListArray, MapArray, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{BooleanBuffer, Buffer, MutableBuffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{ArrowNativeType, DataType, Fields};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::ingest::record::{Context, KmsEvent};
use crate::schema::schema;

/// Column buffers for one batch, in [`crate::schema::COLUMNS`] order.
#[derive(Debug)]
pub struct EventBatchBuilder {
    len: usize,
    s: Vec<Strs>,
    b: Vec<Bools>,
    ts: Vec<Prims<i64>>,
    maps: Vec<Maps>,
    lists: Vec<Lists>,
    ints: Vec<Prims<i32>>,
    /// UTC day number of each row, for partitioning.
    days: Vec<i32>,
    /// The last batch's arena, taken back for the next one once that batch is gone.
    spare: Option<Buffer>,
}

/// Counts of each column kind, matching the schema (checked by a test).
const N_UTF8: usize = 45;
const N_BOOL: usize = 5;
const N_TS: usize = 2;
const N_MAP: usize = 2;
const N_LIST: usize = 1;
const N_INT: usize = 1;

/// Which rows of a column are non-null, and how many are null.
#[derive(Debug)]
struct Validity {
    valid: Vec<bool>,
    nulls: usize,
}

impl Validity {
    fn with_capacity(rows: usize) -> Self {
        Validity {
            valid: Vec::with_capacity(rows),
            nulls: 0,
        }
    }

    #[inline]
    fn push(&mut self, is_valid: bool) {
        self.valid.push(is_valid);
        self.nulls += usize::from(!is_valid);
    }

    /// Rows so far.
    fn len(&self) -> usize {
        self.valid.len()
    }

    /// Stages the null bits (none when no row is null), emptying this.
    fn stage(&mut self, arena: &mut Arena) -> Option<Bits> {
        let bits = (self.nulls > 0).then(|| arena.put_bits(self.valid.iter().copied()));
        self.clear();
        bits
    }

    /// Upper bound of the arena bytes [`Validity::stage`] takes.
    fn arena_bytes(&self) -> usize {
        Arena::bits_bytes(self.len())
    }

    fn clear(&mut self) {
        self.valid.clear();
        self.nulls = 0;
    }

    fn truncate(&mut self, rows: usize) {
        if let Some(dropped) = self.valid.get(rows..) {
            self.nulls -= dropped.iter().filter(|v| !**v).count();
            self.valid.truncate(rows);
        }
    }
}

/// One allocation for all of a batch's column data. Finishing a batch copies every
/// column's offsets, bytes, values and validity bits into one buffer, and the arrays are
/// slices of it: one allocation and one free per batch instead of some 150 aligned ones,
/// which for the many small batches of small objects cost more than the copying.
struct Arena(MutableBuffer);

/// Where a part of a column went in the [`Arena`] (bytes).
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    len: usize,
}

/// Bit-packed booleans in the [`Arena`]: a span and the number of bits.
#[derive(Debug, Clone, Copy)]
struct Bits {
    span: Span,
    len: usize,
}

impl Arena {
    /// Parts start 8-byte aligned (the widest value is an i64; the allocation itself is
    /// 64-byte aligned), so each typed slice is aligned. Each part may cost this padding.
    const ALIGN: usize = 8;

    /// An arena of `bytes`, in the allocation of `spare` when nothing else holds it. A fresh
    /// allocation of a batch's size (about 1.5 MB) is mapped by `malloc` and unmapped when
    /// freed, so each batch touched new pages: 40% of the page faults of an ingest.
    fn with_capacity(bytes: usize, spare: Option<Buffer>) -> Self {
        match spare.map(Buffer::into_mutable) {
            Some(Ok(mut buf)) if buf.capacity() >= bytes => {
                buf.clear();
                Arena(buf)
            }
            _ => Arena(MutableBuffer::with_capacity(bytes)),
        }
    }

    /// Upper bound of the arena bytes of `values`, padding included.
    fn bytes_of<T>(values: &[T]) -> usize {
        std::mem::size_of_val(values) + Self::ALIGN
    }

    /// Upper bound of the arena bytes of `n` bits, padding included.
    fn bits_bytes(n: usize) -> usize {
        n.div_ceil(8) + Self::ALIGN
    }

    fn align(&mut self) -> usize {
        let start = self.0.len().next_multiple_of(Self::ALIGN);
        self.0.resize(start, 0);
        start
    }

    fn put<T: ArrowNativeType>(&mut self, values: &[T]) -> Span {
        let start = self.align();
        self.0.extend_from_slice(values);
        Span {
            start,
            len: self.0.len() - start,
        }
    }

    /// Packs bits LSB first, Arrow's order.
    fn put_bits(&mut self, bits: impl ExactSizeIterator<Item = bool>) -> Bits {
        let start = self.align();
        let len = bits.len();
        let mut byte = 0u8;
        for (i, bit) in bits.enumerate() {
            byte |= u8::from(bit) << (i % 8);
            if i % 8 == 7 {
                self.0.push(byte);
                byte = 0;
            }
        }
        if !len.is_multiple_of(8) {
            self.0.push(byte);
        }
        Bits {
            span: Span {
                start,
                len: self.0.len() - start,
            },
            len,
        }
    }

    fn freeze(self) -> Frozen {
        Frozen(self.0.into())
    }
}

/// The arena once filled: slices of it become the arrays' buffers.
struct Frozen(Buffer);

impl Frozen {
    fn bytes(&self, span: Span) -> Buffer {
        self.0.slice_with_length(span.start, span.len)
    }

    fn scalars<T: ArrowNativeType>(&self, span: Span) -> ScalarBuffer<T> {
        ScalarBuffer::new(self.bytes(span), 0, span.len / std::mem::size_of::<T>())
    }

    fn offsets(&self, span: Span) -> OffsetBuffer<i32> {
        OffsetBuffer::new(self.scalars(span))
    }

    fn bools(&self, bits: Bits) -> BooleanBuffer {
        BooleanBuffer::new(self.bytes(bits.span), 0, bits.len)
    }

    fn nulls(&self, bits: Option<Bits>) -> Option<NullBuffer> {
        bits.map(|b| NullBuffer::new(self.bools(b)))
    }

    fn strings(&self, s: StagedStrs) -> Result<StringArray, ArrowError> {
        StringArray::try_new(
            self.offsets(s.offsets),
            self.bytes(s.data),
            self.nulls(s.nulls),
        )
    }

    /// The array of one staged column, of type `ty`.
    fn array(&self, staged: Staged, ty: &DataType) -> Result<ArrayRef, ArrowError> {
        let mismatch = || ArrowError::SchemaError(format!("builder/schema mismatch at {ty}"));
        Ok(match (staged, ty) {
            (Staged::Str(s), DataType::Utf8) => Arc::new(self.strings(s)?),
            (Staged::Bool { values, nulls }, DataType::Boolean) => {
                Arc::new(BooleanArray::new(self.bools(values), self.nulls(nulls)))
            }
            (Staged::Time { values, nulls }, DataType::Timestamp(_, tz)) => Arc::new(
                TimestampMicrosecondArray::try_new(self.scalars(values), self.nulls(nulls))?
                    .with_timezone_opt(tz.clone()),
            ),
            (Staged::Int { values, nulls }, DataType::Int32) => Arc::new(Int32Array::try_new(
                self.scalars(values),
                self.nulls(nulls),
            )?),
            (
                Staged::Map {
                    offsets,
                    keys,
                    values,
                    nulls,
                },
                DataType::Map(entries_field, sorted),
            ) => {
                let DataType::Struct(fields) = entries_field.data_type() else {
                    return Err(mismatch());
                };
                let entries = StructArray::try_new(
                    Fields::clone(fields),
                    vec![
                        Arc::new(self.strings(keys)?) as ArrayRef,
                        Arc::new(self.strings(values)?),
                    ],
                    None,
                )?;
                Arc::new(MapArray::try_new(
                    Arc::clone(entries_field),
                    self.offsets(offsets),
                    entries,
                    self.nulls(nulls),
                    *sorted,
                )?)
            }
            (
                Staged::List {
                    offsets,
                    items,
                    nulls,
                },
                DataType::List(item_field),
            ) => Arc::new(ListArray::try_new(
                Arc::clone(item_field),
                self.offsets(offsets),
                Arc::new(self.strings(items)?),
                self.nulls(nulls),
            )?),
            _ => return Err(mismatch()),
        })
    }
}

/// A string column in the arena.
#[derive(Debug, Clone, Copy)]
struct StagedStrs {
    offsets: Span,
    data: Span,
    nulls: Option<Bits>,
}

/// A column in the arena, waiting for the arena to be frozen.
#[derive(Debug, Clone, Copy)]
enum Staged {
    Str(StagedStrs),
    Bool {
        values: Bits,
        nulls: Option<Bits>,
    },
    Time {
        values: Span,
        nulls: Option<Bits>,
    },
    Int {
        values: Span,
        nulls: Option<Bits>,
    },
    Map {
        offsets: Span,
        keys: StagedStrs,
        values: StagedStrs,
        nulls: Option<Bits>,
    },
    List {
        offsets: Span,
        items: StagedStrs,
        nulls: Option<Bits>,
    },
}

/// The offsets of a variable-width column: one more than its rows, starting at 0.
#[derive(Debug)]
struct Offsets(Vec<i32>);

impl Offsets {
    fn with_capacity(rows: usize) -> Self {
        let mut offsets = Vec::with_capacity(rows + 1);
        offsets.push(0);
        Offsets(offsets)
    }

    /// Ends a row at `end` (in the child's units: bytes, entries, items).
    #[inline]
    fn push(&mut self, end: usize) {
        // Batches are cut long before 2 GiB of text (see `is_full`).
        self.0.push(end as i32);
    }

    /// Stages the offsets, emptying this.
    fn stage(&mut self, arena: &mut Arena) -> Span {
        let span = arena.put(&self.0);
        self.clear();
        span
    }

    fn arena_bytes(&self) -> usize {
        Arena::bytes_of(&self.0)
    }

    fn clear(&mut self) {
        self.0.truncate(1);
    }

    /// Keeps the first `rows` rows; returns where they end in the child.
    fn truncate(&mut self, rows: usize) -> usize {
        self.0.truncate(rows + 1);
        self.0.last().map_or(0, |&end| end as usize)
    }
}

/// A string column.
#[derive(Debug)]
struct Strs {
    offsets: Offsets,
    data: Vec<u8>,
    validity: Validity,
}

impl Strs {
    fn with_capacity(rows: usize) -> Self {
        Strs {
            offsets: Offsets::with_capacity(rows),
            data: Vec::with_capacity(rows * 8),
            validity: Validity::with_capacity(rows),
        }
    }

    #[inline]
    fn push(&mut self, v: Option<&str>) {
        if let Some(v) = v {
            self.data.extend_from_slice(v.as_bytes());
        }
        self.validity.push(v.is_some());
        self.offsets.push(self.data.len());
    }

    fn len(&self) -> usize {
        self.validity.len()
    }

    /// Stages the column and empties it, keeping the capacity.
    fn stage(&mut self, arena: &mut Arena) -> StagedStrs {
        let staged = StagedStrs {
            offsets: self.offsets.stage(arena),
            data: arena.put(&self.data),
            nulls: self.validity.stage(arena),
        };
        self.data.clear();
        staged
    }

    fn arena_bytes(&self) -> usize {
        self.offsets.arena_bytes() + Arena::bytes_of(&self.data) + self.validity.arena_bytes()
    }

    fn clear(&mut self) {
        self.offsets.clear();
        self.data.clear();
        self.validity.clear();
    }

    fn truncate(&mut self, rows: usize) {
        let end = self.offsets.truncate(rows);
        self.data.truncate(end);
        self.validity.truncate(rows);
    }
}

/// A fixed-width column: numbers, or booleans (bit-packed when staged).
#[derive(Debug)]
struct Prims<T> {
    values: Vec<T>,
    validity: Validity,
}

impl<T: Copy + Default> Prims<T> {
    fn with_capacity(rows: usize) -> Self {
        Prims {
            values: Vec::with_capacity(rows),
            validity: Validity::with_capacity(rows),
        }
    }

    #[inline]
    fn push(&mut self, v: Option<T>) {
        self.values.push(v.unwrap_or_default());
        self.validity.push(v.is_some());
    }

    fn clear(&mut self) {
        self.values.clear();
        self.validity.clear();
    }

    fn truncate(&mut self, rows: usize) {
        self.values.truncate(rows);
        self.validity.truncate(rows);
    }
}

impl<T: arrow::datatypes::ArrowNativeType> Prims<T> {
    fn stage(&mut self, arena: &mut Arena) -> (Span, Option<Bits>) {
        let values = arena.put(&self.values);
        self.values.clear();
        (values, self.validity.stage(arena))
    }

    fn arena_bytes(&self) -> usize {
        Arena::bytes_of(&self.values) + self.validity.arena_bytes()
    }
}

/// A boolean column.
type Bools = Prims<bool>;

impl Bools {
    fn stage_bits(&mut self, arena: &mut Arena) -> Staged {
        let values = arena.put_bits(self.values.iter().copied());
        self.values.clear();
        Staged::Bool {
            values,
            nulls: self.validity.stage(arena),
        }
    }

    fn arena_bits_bytes(&self) -> usize {
        Arena::bits_bytes(self.values.len()) + self.validity.arena_bytes()
    }
}

/// A string-to-string map column.
#[derive(Debug)]
struct Maps {
    offsets: Offsets,
    keys: Strs,
    values: Strs,
    validity: Validity,
}

impl Maps {
    fn with_capacity(rows: usize) -> Self {
        Maps {
            offsets: Offsets::with_capacity(rows),
            keys: Strs::with_capacity(rows),
            values: Strs::with_capacity(rows),
            validity: Validity::with_capacity(rows),
        }
    }

    fn push(&mut self, v: Option<&Context<'_>>) {
        for (k, val) in v.into_iter().flatten() {
            self.keys.push(Some(k));
            self.values.push(val.as_deref());
        }
        self.validity.push(v.is_some());
        self.offsets.push(self.keys.len());
    }

    fn stage(&mut self, arena: &mut Arena) -> Staged {
        Staged::Map {
            offsets: self.offsets.stage(arena),
            keys: self.keys.stage(arena),
            values: self.values.stage(arena),
            nulls: self.validity.stage(arena),
        }
    }

    fn arena_bytes(&self) -> usize {
        self.offsets.arena_bytes()
            + self.keys.arena_bytes()
            + self.values.arena_bytes()
            + self.validity.arena_bytes()
    }

    fn clear(&mut self) {
        self.offsets.clear();
        self.keys.clear();
        self.values.clear();
        self.validity.clear();
    }

    fn truncate(&mut self, rows: usize) {
        let end = self.offsets.truncate(rows);
        self.keys.truncate(end);
        self.values.truncate(end);
        self.validity.truncate(rows);
    }
}

/// A list-of-strings column.
#[derive(Debug)]
struct Lists {
    offsets: Offsets,
    items: Strs,
    validity: Validity,
}

impl Lists {
    fn with_capacity(rows: usize) -> Self {
        Lists {
            offsets: Offsets::with_capacity(rows),
            items: Strs::with_capacity(rows),
            validity: Validity::with_capacity(rows),
        }
    }

    fn push(&mut self, v: Option<&[std::borrow::Cow<'_, str>]>) {
        for item in v.into_iter().flatten() {
            self.items.push(Some(item));
        }
        self.validity.push(v.is_some());
        self.offsets.push(self.items.len());
    }

    fn stage(&mut self, arena: &mut Arena) -> Staged {
        Staged::List {
            offsets: self.offsets.stage(arena),
            items: self.items.stage(arena),
            nulls: self.validity.stage(arena),
        }
    }

    fn arena_bytes(&self) -> usize {
        self.offsets.arena_bytes() + self.items.arena_bytes() + self.validity.arena_bytes()
    }

    fn clear(&mut self) {
        self.offsets.clear();
        self.items.clear();
        self.validity.clear();
    }

    fn truncate(&mut self, rows: usize) {
        let end = self.offsets.truncate(rows);
        self.items.truncate(end);
        self.validity.truncate(rows);
    }
}

/// Text in a batch beyond which it is cut, whatever its row count: it bounds memory for
/// records with large request blocks and keeps 32-bit offsets far from overflowing.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

thread_local! {
    static BUILDER: RefCell<Option<EventBatchBuilder>> = const { RefCell::new(None) };
}

/// Arena capacity beyond which a builder does not keep it for the next batch: a batch of
/// huge records must not pin its memory.
const MAX_SPARE_BYTES: usize = 8 << 20;

/// Text capacity beyond which a thread does not keep its builder: one object with huge
/// records must not pin its batch's memory for the life of the thread.
const MAX_KEPT_BYTES: usize = 16 << 20;

/// Runs `f` with this thread's builder (created on first use with `rows` of capacity), so
/// that its buffers are reused from object to object. The builder is emptied before `f`.
pub fn with_builder<T>(rows: usize, f: impl FnOnce(&mut EventBatchBuilder) -> T) -> T {
    let taken = BUILDER.with(|b| b.borrow_mut().take());
    let mut builder = taken.unwrap_or_else(|| EventBatchBuilder::with_capacity(rows));
    builder.clear();
    let out = f(&mut builder);
    if builder.capacity_bytes() <= MAX_KEPT_BYTES {
        BUILDER.with(|b| *b.borrow_mut() = Some(builder));
    }
    out
}

impl EventBatchBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        EventBatchBuilder {
            len: 0,
            s: (0..N_UTF8).map(|_| Strs::with_capacity(rows)).collect(),
            b: (0..N_BOOL).map(|_| Bools::with_capacity(rows)).collect(),
            ts: (0..N_TS).map(|_| Prims::with_capacity(rows)).collect(),
            maps: (0..N_MAP).map(|_| Maps::with_capacity(rows)).collect(),
            lists: (0..N_LIST).map(|_| Lists::with_capacity(rows)).collect(),
            ints: (0..N_INT).map(|_| Prims::with_capacity(rows)).collect(),
            days: Vec::with_capacity(rows),
            spare: None,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every column of text: the strings, the maps' keys and values, the lists' items.
    fn text_columns(&self) -> impl Iterator<Item = &Strs> {
        self.s
            .iter()
            .chain(self.maps.iter().flat_map(|m| [&m.keys, &m.values]))
            .chain(self.lists.iter().map(|l| &l.items))
    }

    /// Bytes of text buffered.
    pub fn bytes(&self) -> usize {
        self.text_columns().map(|c| c.data.len()).sum()
    }

    /// Bytes of text the columns can hold without growing.
    pub fn capacity_bytes(&self) -> usize {
        self.text_columns().map(|c| c.data.capacity()).sum()
    }

    /// True when the batch should be finished: `rows` rows, or [`MAX_BATCH_BYTES`] of text.
    pub fn is_full(&self, rows: usize) -> bool {
        self.len >= rows || (self.len.is_multiple_of(64) && self.bytes() >= MAX_BATCH_BYTES)
    }

    /// The UTC day number (days since 1970-01-01) of each buffered row.
    pub fn days(&self) -> &[i32] {
        &self.days
    }

    /// Drops the buffered rows (keeping the capacity).
    pub fn clear(&mut self) {
        self.s.iter_mut().for_each(Strs::clear);
        self.b.iter_mut().for_each(Bools::clear);
        self.ts.iter_mut().for_each(Prims::clear);
        self.maps.iter_mut().for_each(Maps::clear);
        self.lists.iter_mut().for_each(Lists::clear);
        self.ints.iter_mut().for_each(Prims::clear);
        self.days.clear();
        self.len = 0;
    }

    /// Keeps the first `rows` rows and drops the rest (those of an object that failed
    /// after rows of objects read whole before it).
    pub fn truncate(&mut self, rows: usize) {
        if rows >= self.len {
            return;
        }
        self.s.iter_mut().for_each(|c| c.truncate(rows));
        self.b.iter_mut().for_each(|c| c.truncate(rows));
        self.ts.iter_mut().for_each(|c| c.truncate(rows));
        self.maps.iter_mut().for_each(|c| c.truncate(rows));
        self.lists.iter_mut().for_each(|c| c.truncate(rows));
        self.ints.iter_mut().for_each(|c| c.truncate(rows));
        self.days.truncate(rows);
        self.len = rows;
    }

    pub fn append(&mut self, e: &KmsEvent<'_>) {
        let mut w = RowWriter {
            t: self,
            s: 0,
            b: 0,
            ts: 0,
            m: 0,
            l: 0,
            i: 0,
        };
        // Exactly the order of schema::COLUMNS.
        w.str(Some(&e.event_id));
        w.time(Some(e.event_time));
        w.str(Some(&e.event_name));
        w.str(e.event_type.as_deref());
        w.str(e.event_version.as_deref());
        w.str(e.event_category.as_deref());
        w.str(e.aws_region.as_deref());
        w.str(e.account_id.as_deref());
        w.bool(e.read_only);
        w.bool(e.management_event);
        w.str(e.request_id.as_deref());
        w.str(e.shared_event_id.as_deref());
        w.str(e.principal_type.as_deref());
        w.str(e.principal_arn.as_deref());
        w.str(e.principal.as_deref());
        w.str(e.principal_account.as_deref());
        w.str(e.principal_id.as_deref());
        w.str(e.user_name.as_deref());
        w.str(e.access_key_id.as_deref());
        w.str(e.session_issuer_arn.as_deref());
        w.time(e.session_creation_time);
        w.bool(e.mfa_authenticated);
        w.str(e.invoked_by.as_deref());
        w.bool(Some(e.via_aws_service));
        w.str(e.source_ip.as_deref());
        w.str(e.user_agent.as_deref());
        w.str(e.vpc_endpoint_id.as_deref());
        w.str(e.vpc_endpoint_account_id.as_deref());
        w.str(e.tls_version.as_deref());
        w.str(e.key_arn.as_deref());
        w.str(e.key_id.as_deref());
        w.str(e.key_account.as_deref());
        w.str(e.key_region.as_deref());
        w.str(e.key_ref.as_deref());
        w.str(e.alias_name.as_deref());
        w.map(e.encryption_context.as_ref());
        w.str(e.destination_key_arn.as_deref());
        w.str(e.destination_key_account.as_deref());
        w.map(e.destination_encryption_context.as_ref());
        w.str(e.encryption_algorithm.as_deref());
        w.str(e.key_spec.as_deref());
        w.str(e.key_usage.as_deref());
        w.str(e.key_origin.as_deref());
        w.str(e.grantee_principal.as_deref());
        w.str(e.retiring_principal.as_deref());
        w.list(e.grant_operations.as_deref());
        w.str(e.grant_id.as_deref());
        w.str(e.key_policy.as_deref());
        w.bool(e.bypass_policy_lockout_safety_check);
        w.int(e.pending_window_in_days);
        w.str(e.error_code.as_deref());
        w.str(e.error_message.as_deref());
        w.str(e.request_parameters);
        w.str(e.response_elements);
        w.str(e.additional_event_data);
        w.str(Some(e.source_object));
        debug_assert_eq!(
            (w.s, w.b, w.ts, w.m, w.l, w.i),
            (N_UTF8, N_BOOL, N_TS, N_MAP, N_LIST, N_INT)
        );
        self.days
            .push(e.event_time.div_euclid(crate::time::DAY_MICROS) as i32);
        self.len += 1;
    }

    /// Builds the batch (in schema order) and empties the columns, keeping their capacity.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut arena = Arena::with_capacity(self.arena_bytes(), self.spare.take());
        let mut s = self.s.iter_mut();
        let mut b = self.b.iter_mut();
        let mut ts = self.ts.iter_mut();
        let mut m = self.maps.iter_mut();
        let mut l = self.lists.iter_mut();
        let mut i = self.ints.iter_mut();
        let schema = schema();
        let mut staged = Vec::with_capacity(schema.fields().len());
        let missing = || ArrowError::SchemaError("builder/schema mismatch".into());
        for field in schema.fields() {
            staged.push(match field.data_type() {
                DataType::Utf8 => Staged::Str(s.next().ok_or_else(missing)?.stage(&mut arena)),
                DataType::Boolean => b.next().ok_or_else(missing)?.stage_bits(&mut arena),
                DataType::Timestamp(_, _) => {
                    let (values, nulls) = ts.next().ok_or_else(missing)?.stage(&mut arena);
                    Staged::Time { values, nulls }
                }
                DataType::Int32 => {
                    let (values, nulls) = i.next().ok_or_else(missing)?.stage(&mut arena);
                    Staged::Int { values, nulls }
                }
                DataType::Map(_, _) => m.next().ok_or_else(missing)?.stage(&mut arena),
                DataType::List(_) => l.next().ok_or_else(missing)?.stage(&mut arena),
                other => {
                    return Err(ArrowError::SchemaError(format!("no column for {other}")));
                }
            });
        }
        self.len = 0;
        self.days.clear();
        let arena = arena.freeze();
        if arena.0.capacity() <= MAX_SPARE_BYTES {
            self.spare = Some(arena.0.clone());
        }
        let columns = staged
            .into_iter()
            .zip(schema.fields())
            .map(|(col, field)| arena.array(col, field.data_type()))
            .collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(schema, columns)
    }

    /// Upper bound of the arena bytes of [`EventBatchBuilder::finish`].
    fn arena_bytes(&self) -> usize {
        self.s.iter().map(Strs::arena_bytes).sum::<usize>()
            + self.b.iter().map(Bools::arena_bits_bytes).sum::<usize>()
            + self.ts.iter().map(Prims::arena_bytes).sum::<usize>()
            + self.ints.iter().map(Prims::arena_bytes).sum::<usize>()
            + self.maps.iter().map(Maps::arena_bytes).sum::<usize>()
            + self.lists.iter().map(Lists::arena_bytes).sum::<usize>()
    }
}

/// Appends one row's values, each to the next column of its kind.
struct RowWriter<'t> {
    t: &'t mut EventBatchBuilder,
    s: usize,
    b: usize,
    ts: usize,
    m: usize,
    l: usize,
    i: usize,
}

impl RowWriter<'_> {
    #[inline]
    fn str(&mut self, v: Option<&str>) {
        self.t.s[self.s].push(v);
        self.s += 1;
    }
    fn bool(&mut self, v: Option<bool>) {
        self.t.b[self.b].push(v);
        self.b += 1;
    }
    fn time(&mut self, v: Option<i64>) {
        self.t.ts[self.ts].push(v);
        self.ts += 1;
    }
    fn int(&mut self, v: Option<i32>) {
        self.t.ints[self.i].push(v);
        self.i += 1;
    }
    fn map(&mut self, v: Option<&Context<'_>>) {
        self.t.maps[self.m].push(v);
        self.m += 1;
    }
    fn list(&mut self, v: Option<&[std::borrow::Cow<'_, str>]>) {
        self.t.lists[self.l].push(v);
        self.l += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{COLUMNS, ColumnType};

    #[test]
    fn builder_counts_match_schema() {
        let count = |t: ColumnType| COLUMNS.iter().filter(|c| c.ty == t).count();
        assert_eq!(count(ColumnType::Utf8), N_UTF8);
        assert_eq!(count(ColumnType::Bool), N_BOOL);
        assert_eq!(count(ColumnType::Timestamp), N_TS);
        assert_eq!(count(ColumnType::StrMap), N_MAP);
        assert_eq!(count(ColumnType::StrList), N_LIST);
        assert_eq!(count(ColumnType::Int32), N_INT);
    }

    #[test]
    fn truncating_drops_exactly_the_later_rows() {
        let event = |i: i64, rich: bool| KmsEvent {
            event_id: format!("e{i}").into(),
            event_name: "Decrypt".into(),
            source_object: "x",
            event_time: 86_400_000_000 * i,
            encryption_context: rich.then(|| {
                vec![
                    ("k".into(), Some(format!("v{i}").into())),
                    ("n".into(), None),
                ]
            }),
            grant_operations: rich.then(|| vec!["Decrypt".into()]),
            mfa_authenticated: rich.then_some(true),
            pending_window_in_days: rich.then_some(7),
            key_id: (!rich).then(|| "k".into()),
            ..Default::default()
        };
        let mut cut = EventBatchBuilder::with_capacity(1);
        cut.append(&event(0, true));
        cut.append(&event(1, false));
        // An object that fails leaves these two behind: values, nulls, map entries, items.
        cut.append(&event(2, true));
        cut.append(&event(3, false));
        cut.truncate(2);
        assert_eq!((cut.len(), cut.days()), (2, &[0, 1][..]));
        cut.truncate(5);
        cut.append(&event(4, true));
        let mut straight = EventBatchBuilder::with_capacity(1);
        for (i, rich) in [(0, true), (1, false), (4, true)] {
            straight.append(&event(i, rich));
        }
        assert_eq!(cut.days(), straight.days());
        assert_eq!(
            cut.finish().expect("cut"),
            straight.finish().expect("straight")
        );
    }

    #[test]
    fn batches_reuse_their_columns_and_keep_values_and_nulls() {
        use arrow::array::{Array, AsArray};
        let mut b = EventBatchBuilder::with_capacity(1);
        for round in 0..3 {
            let e = KmsEvent {
                event_id: format!("e{round}").into(),
                event_name: "Decrypt".into(),
                source_object: "x",
                event_time: 86_400_000_000 * round,
                encryption_context: Some(vec![("k".into(), Some("v".into())), ("n".into(), None)]),
                grant_operations: Some(vec!["Decrypt".into(), "Encrypt".into()]),
                mfa_authenticated: Some(round % 2 == 0),
                pending_window_in_days: Some(7),
                ..Default::default()
            };
            b.append(&e);
            b.append(&KmsEvent {
                event_id: "plain".into(),
                event_name: "Encrypt".into(),
                source_object: "x",
                ..Default::default()
            });
            assert_eq!(b.days(), &[round as i32, 0]);
            let batch = b.finish().expect("batch");
            assert!(b.is_empty() && b.bytes() == 0);
            assert_eq!(batch.num_rows(), 2);
            assert_eq!(batch.schema(), schema());
            let ids = batch.column(0).as_string::<i32>();
            assert_eq!(ids.value(0), format!("e{round}"));
            assert_eq!(ids.value(1), "plain");
            let col = |name: &str| {
                batch
                    .column(batch.schema().index_of(name).expect(name))
                    .clone()
            };
            let ctx = col("encryption_context");
            let ctx = ctx.as_map();
            assert!(ctx.is_valid(0) && ctx.is_null(1));
            let entry = ctx.value(0);
            assert_eq!(entry.column(0).as_string::<i32>().value(1), "n");
            assert!(entry.column(1).is_null(1));
            assert_eq!(entry.column(1).as_string::<i32>().value(0), "v");
            let ops = col("grant_operations");
            assert_eq!(ops.as_list::<i32>().value(0).len(), 2);
            assert!(ops.is_null(1));
            let mfa = col("mfa_authenticated");
            assert_eq!(mfa.as_boolean().value(0), round % 2 == 0);
            assert!(mfa.is_null(1));
            let days = col("pending_window_in_days");
            assert!(days.is_valid(0) && days.is_null(1));
            assert_eq!(col("key_arn").null_count(), 2);
        }
        // Rows dropped by clear() are in no later batch.
        b.append(&KmsEvent {
            event_id: "dropped".into(),
            encryption_context: Some(vec![("k".into(), None)]),
            ..Default::default()
        });
        b.clear();
        assert!(b.is_empty() && b.bytes() == 0 && b.days().is_empty());
        b.append(&KmsEvent {
            event_id: "kept".into(),
            ..Default::default()
        });
        let batch = b.finish().expect("batch");
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.column(0).as_string::<i32>().value(0), "kept");
        let ctx = batch
            .column(batch.schema().index_of("encryption_context").expect("ctx"))
            .clone();
        assert_eq!(ctx.as_map().entries().len(), 0);
    }

    #[test]
    fn a_batch_arena_is_reused_only_once_its_batch_is_gone() {
        use arrow::array::AsArray;
        let mut b = EventBatchBuilder::with_capacity(4);
        let fill = |b: &mut EventBatchBuilder, id: &str| {
            for _ in 0..3 {
                b.append(&KmsEvent {
                    event_id: id.into(),
                    event_name: "Decrypt".into(),
                    ..Default::default()
                });
            }
        };
        let base = |batch: &RecordBatch| batch.column(0).to_data().buffers()[0].as_ptr();
        fill(&mut b, "first");
        let first = b.finish().expect("batch");
        let first_at = base(&first);
        // While the first batch lives, the next one gets an allocation of its own and the
        // first keeps its values.
        fill(&mut b, "second");
        let second = b.finish().expect("batch");
        assert_ne!(base(&second), first_at);
        let ids = |batch: &RecordBatch| -> Vec<String> {
            let col = batch.column(0).as_string::<i32>();
            col.iter()
                .map(|v| v.unwrap_or_default().to_owned())
                .collect()
        };
        assert_eq!(ids(&first), ["first"; 3]);
        let second_at = base(&second);
        drop(first);
        drop(second);
        // Once the last batch is gone, its allocation takes the next one.
        fill(&mut b, "third");
        let third = b.finish().expect("batch");
        assert_eq!(base(&third), second_at);
        assert_eq!(ids(&third), ["third"; 3]);
    }

    #[test]
    fn a_thread_keeps_its_builder_unless_it_grew_huge() {
        std::thread::spawn(|| {
            let small = KmsEvent {
                event_id: "e".into(),
                event_name: "Decrypt".into(),
                source_object: "x",
                ..Default::default()
            };
            with_builder(4, |b| b.append(&small));
            // Kept, and emptied before the next use.
            let kept = with_builder(4, |b| (b.is_empty(), b.capacity_bytes()));
            assert!(kept.0 && kept.1 > 0);
            let huge = "x".repeat(MAX_KEPT_BYTES + 1);
            with_builder(4, |b| {
                b.append(&KmsEvent {
                    request_parameters: Some(&huge),
                    ..small.clone()
                })
            });
            let after = with_builder(4, |b| b.capacity_bytes());
            assert!(after < MAX_KEPT_BYTES, "{after}");
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn a_default_event_builds_a_valid_batch() {
        let mut b = EventBatchBuilder::with_capacity(4);
        let e = KmsEvent {
            event_id: "e1".into(),
            event_name: "Decrypt".into(),
            source_object: "x",
            encryption_context: Some(vec![("k".into(), Some("v".into()))]),
            grant_operations: Some(vec!["Decrypt".into()]),
            ..Default::default()
        };
        b.append(&e);
        b.append(&KmsEvent {
            event_id: "e2".into(),
            event_name: "Encrypt".into(),
            source_object: "x",
            ..Default::default()
        });
        let batch = b.finish().expect("batch");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), schema());
        assert!(b.is_empty());
    }

    /// Row `i` of the batches below: every kind of column, null on some rows, text of
    /// varying length.
    fn patterned(i: usize) -> KmsEvent<'static> {
        let some = |k: usize| !i.is_multiple_of(k);
        KmsEvent {
            event_id: format!("id-{}", "x".repeat(i % 13)).into(),
            event_time: i as i64 * crate::time::DAY_MICROS,
            event_name: "Decrypt".into(),
            key_arn: some(3).then(|| format!("arn:{i}").into()),
            read_only: some(4).then_some(i.is_multiple_of(3)),
            via_aws_service: i.is_multiple_of(2),
            session_creation_time: some(5).then_some(i as i64),
            pending_window_in_days: some(6).then_some(i as i32),
            encryption_context: some(7).then(|| {
                (0..i % 4)
                    .map(|k| {
                        (
                            format!("k{k}").into(),
                            some(2).then(|| format!("v{i}").into()),
                        )
                    })
                    .collect()
            }),
            grant_operations: some(8)
                .then(|| (0..i % 3).map(|k| format!("op{k}").into()).collect()),
            source_object: "obj",
            ..Default::default()
        }
    }

    #[test]
    fn finished_columns_hold_exactly_the_rows_at_every_bit_boundary() {
        use arrow::array::{Array, AsArray};
        use arrow::datatypes::{Int32Type, TimestampMicrosecondType};
        let mut b = EventBatchBuilder::with_capacity(8);
        // Row counts around the byte boundaries of the validity and boolean bits.
        for rows in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200] {
            let events: Vec<_> = (0..rows).map(patterned).collect();
            events.iter().for_each(|e| b.append(e));
            let bound = b.arena_bytes();
            let batch = b.finish().expect("batch");
            assert_eq!(batch.num_rows(), rows);
            let col = |name: &str| batch.column_by_name(name).expect(name).clone();
            let (ids, keys) = (col("event_id"), col("key_arn"));
            let (ids, keys) = (ids.as_string::<i32>(), keys.as_string::<i32>());
            let (read_only, via) = (col("read_only"), col("via_aws_service"));
            let (read_only, via) = (read_only.as_boolean(), via.as_boolean());
            let session = col("session_creation_time");
            let session = session.as_primitive::<TimestampMicrosecondType>();
            let days = col("pending_window_in_days");
            let days = days.as_primitive::<Int32Type>();
            let (ctx, ops) = (col("encryption_context"), col("grant_operations"));
            let (ctx, ops) = (ctx.as_map(), ops.as_list::<i32>());
            for (i, e) in events.iter().enumerate() {
                assert_eq!(ids.value(i), e.event_id, "row {i} of {rows}");
                assert_eq!(
                    keys.is_valid(i).then(|| keys.value(i)),
                    e.key_arn.as_deref()
                );
                assert_eq!(
                    read_only.is_valid(i).then(|| read_only.value(i)),
                    e.read_only
                );
                assert_eq!(via.value(i), e.via_aws_service);
                let t = session.is_valid(i).then(|| session.value(i));
                assert_eq!(t, e.session_creation_time);
                let d = days.is_valid(i).then(|| days.value(i));
                assert_eq!(d, e.pending_window_in_days);
                let pairs = ctx.is_valid(i).then(|| {
                    let entries = ctx.value(i);
                    let (k, v) = (entries.column(0), entries.column(1));
                    let (k, v) = (k.as_string::<i32>(), v.as_string::<i32>());
                    (0..entries.len())
                        .map(|j| {
                            (
                                k.value(j).to_owned(),
                                v.is_valid(j).then(|| v.value(j).to_owned()),
                            )
                        })
                        .collect::<Vec<_>>()
                });
                let want = e.encryption_context.as_ref().map(|c| {
                    c.iter()
                        .map(|(k, v)| (k.to_string(), v.as_ref().map(|v| v.to_string())))
                        .collect::<Vec<_>>()
                });
                assert_eq!(pairs, want, "row {i} of {rows}");
                let items = ops.is_valid(i).then(|| {
                    let items = ops.value(i);
                    let items = items.as_string::<i32>();
                    items
                        .iter()
                        .map(|s| s.unwrap_or_default().to_owned())
                        .collect::<Vec<_>>()
                });
                let want = e
                    .grant_operations
                    .as_ref()
                    .map(|o| o.iter().map(|s| s.to_string()).collect::<Vec<_>>());
                assert_eq!(items, want, "row {i} of {rows}");
            }
            // One allocation for every column, sized up front (it never had to grow): the
            // rows grow from batch to batch, so the last batch's arena is always too small.
            let arena = ids.values();
            assert_eq!(keys.values().data_ptr(), arena.data_ptr());
            assert_eq!(session.values().inner().data_ptr(), arena.data_ptr());
            assert!(arena.capacity() <= bound.next_multiple_of(64), "{bound}");
        }
    }
}
