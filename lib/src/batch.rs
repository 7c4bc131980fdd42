//! Accumulates [`KmsEvent`]s into Arrow record batches of the `kms_events` schema.
//!
//! The columns are plain vectors that keep their capacity from one batch to the next (and,
//! through [`with_builder`], from one object to the next on a thread), and are copied into
//! Arrow arrays when a batch is finished. Arrow's own builders hand their buffers over on
//! `finish` and start again from nothing, which for the many small batches of CloudTrail's
//! small objects cost more than the rows themselves.

use std::cell::RefCell;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Int32Array, ListArray, MapArray, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::{DataType, Fields};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::record::{Context, KmsEvent};
use crate::schema::schema;

/// Column buffers for one batch, in [`crate::schema::COLUMNS`] order.
#[derive(Debug)]
pub struct EventBatchBuilder {
    len: usize,
    s: Vec<Strs>,
    b: Vec<Vec<Option<bool>>>,
    ts: Vec<Prims<i64>>,
    maps: Vec<Maps>,
    lists: Vec<Lists>,
    ints: Vec<Prims<i32>>,
    /// UTC day number of each row, for partitioning.
    days: Vec<i32>,
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

    /// The null buffer (none when no row is null), emptying this.
    fn take(&mut self) -> Option<NullBuffer> {
        let nulls = (self.nulls > 0).then(|| NullBuffer::from(self.valid.as_slice()));
        self.clear();
        nulls
    }

    fn clear(&mut self) {
        self.valid.clear();
        self.nulls = 0;
    }
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

    /// Copies the offsets out, emptying this.
    fn take(&mut self) -> OffsetBuffer<i32> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(Buffer::from_slice_ref(&self.0)));
        self.clear();
        offsets
    }

    fn clear(&mut self) {
        self.0.truncate(1);
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

    /// Copies the column out as an array and empties it, keeping the capacity.
    fn take(&mut self) -> Result<StringArray, ArrowError> {
        let array = StringArray::try_new(
            self.offsets.take(),
            Buffer::from_slice_ref(&self.data),
            self.validity.take(),
        );
        self.data.clear();
        array
    }

    fn clear(&mut self) {
        self.offsets.clear();
        self.data.clear();
        self.validity.clear();
    }
}

/// A fixed-width column.
#[derive(Debug)]
struct Prims<T> {
    values: Vec<T>,
    validity: Validity,
}

impl<T: Copy + Default + arrow::datatypes::ArrowNativeType> Prims<T> {
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

    fn take(&mut self) -> (ScalarBuffer<T>, Option<NullBuffer>) {
        let values = ScalarBuffer::from(Buffer::from_slice_ref(&self.values));
        self.values.clear();
        (values, self.validity.take())
    }

    fn clear(&mut self) {
        self.values.clear();
        self.validity.clear();
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

    fn take(&mut self, ty: &DataType) -> Result<MapArray, ArrowError> {
        let DataType::Map(entries_field, sorted) = ty else {
            return Err(ArrowError::SchemaError(format!("not a map type: {ty}")));
        };
        let DataType::Struct(fields) = entries_field.data_type() else {
            return Err(ArrowError::SchemaError(
                "map entries are not a struct".into(),
            ));
        };
        let entries = StructArray::try_new(
            Fields::clone(fields),
            vec![
                Arc::new(self.keys.take()?) as ArrayRef,
                Arc::new(self.values.take()?),
            ],
            None,
        )?;
        MapArray::try_new(
            Arc::clone(entries_field),
            self.offsets.take(),
            entries,
            self.validity.take(),
            *sorted,
        )
    }

    fn clear(&mut self) {
        self.offsets.clear();
        self.keys.clear();
        self.values.clear();
        self.validity.clear();
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

    fn take(&mut self, ty: &DataType) -> Result<ListArray, ArrowError> {
        let DataType::List(item_field) = ty else {
            return Err(ArrowError::SchemaError(format!("not a list type: {ty}")));
        };
        ListArray::try_new(
            Arc::clone(item_field),
            self.offsets.take(),
            Arc::new(self.items.take()?),
            self.validity.take(),
        )
    }

    fn clear(&mut self) {
        self.offsets.clear();
        self.items.clear();
        self.validity.clear();
    }
}

/// Text in a batch beyond which it is cut, whatever its row count: it bounds memory for
/// records with large request blocks and keeps 32-bit offsets far from overflowing.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

thread_local! {
    static BUILDER: RefCell<Option<EventBatchBuilder>> = const { RefCell::new(None) };
}

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
            b: (0..N_BOOL).map(|_| Vec::with_capacity(rows)).collect(),
            ts: (0..N_TS).map(|_| Prims::with_capacity(rows)).collect(),
            maps: (0..N_MAP).map(|_| Maps::with_capacity(rows)).collect(),
            lists: (0..N_LIST).map(|_| Lists::with_capacity(rows)).collect(),
            ints: (0..N_INT).map(|_| Prims::with_capacity(rows)).collect(),
            days: Vec::with_capacity(rows),
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
        self.b.iter_mut().for_each(Vec::clear);
        self.ts.iter_mut().for_each(Prims::clear);
        self.maps.iter_mut().for_each(Maps::clear);
        self.lists.iter_mut().for_each(Lists::clear);
        self.ints.iter_mut().for_each(Prims::clear);
        self.days.clear();
        self.len = 0;
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
        let mut s = self.s.iter_mut();
        let mut b = self.b.iter_mut();
        let mut ts = self.ts.iter_mut();
        let mut m = self.maps.iter_mut();
        let mut l = self.lists.iter_mut();
        let mut i = self.ints.iter_mut();
        let schema = schema();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        let missing = || ArrowError::SchemaError("builder/schema mismatch".into());
        for field in schema.fields() {
            let ty = field.data_type();
            let array: ArrayRef = match ty {
                DataType::Utf8 => Arc::new(s.next().ok_or_else(missing)?.take()?),
                DataType::Boolean => {
                    let col = b.next().ok_or_else(missing)?;
                    let array = BooleanArray::from_iter(col.iter().copied());
                    col.clear();
                    Arc::new(array)
                }
                DataType::Timestamp(_, tz) => {
                    let (values, nulls) = ts.next().ok_or_else(missing)?.take();
                    Arc::new(
                        TimestampMicrosecondArray::try_new(values, nulls)?
                            .with_timezone_opt(tz.clone()),
                    )
                }
                DataType::Map(_, _) => Arc::new(m.next().ok_or_else(missing)?.take(ty)?),
                DataType::List(_) => Arc::new(l.next().ok_or_else(missing)?.take(ty)?),
                DataType::Int32 => {
                    let (values, nulls) = i.next().ok_or_else(missing)?.take();
                    Arc::new(Int32Array::try_new(values, nulls)?)
                }
                other => {
                    return Err(ArrowError::SchemaError(format!("no column for {other}")));
                }
            };
            columns.push(array);
        }
        self.len = 0;
        self.days.clear();
        RecordBatch::try_new(schema, columns)
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
}
