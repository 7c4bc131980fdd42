//! Accumulates [`KmsEvent`]s into Arrow record batches of the `kms_events` schema.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Int32Builder, ListBuilder, MapBuilder, MapFieldNames, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::record::{Context, KmsEvent};
use crate::schema::schema;

type StrMapBuilder = MapBuilder<StringBuilder, StringBuilder>;

/// Column builders for one batch, in [`crate::schema::COLUMNS`] order.
#[derive(Debug)]
pub struct EventBatchBuilder {
    len: usize,
    s: Vec<StringBuilder>,
    b: Vec<BooleanBuilder>,
    ts: Vec<TimestampMicrosecondBuilder>,
    maps: Vec<StrMapBuilder>,
    lists: Vec<ListBuilder<StringBuilder>>,
    ints: Vec<Int32Builder>,
    /// UTC day number of each row, for partitioning.
    days: Vec<i32>,
}

/// Counts of each builder kind, matching the schema (checked by a test).
const N_UTF8: usize = 45;
const N_BOOL: usize = 5;
const N_TS: usize = 2;
const N_MAP: usize = 2;
const N_LIST: usize = 1;
const N_INT: usize = 1;

fn map_builder(capacity: usize) -> StrMapBuilder {
    let names = MapFieldNames {
        entry: "entries".into(),
        key: "keys".into(),
        value: "values".into(),
    };
    MapBuilder::new(
        Some(names),
        StringBuilder::with_capacity(capacity, capacity * 8),
        StringBuilder::with_capacity(capacity, capacity * 8),
    )
}

impl EventBatchBuilder {
    pub fn with_capacity(rows: usize) -> Self {
        EventBatchBuilder {
            len: 0,
            s: (0..N_UTF8)
                .map(|_| StringBuilder::with_capacity(rows, rows * 8))
                .collect(),
            b: (0..N_BOOL)
                .map(|_| BooleanBuilder::with_capacity(rows))
                .collect(),
            ts: (0..N_TS)
                .map(|_| TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"))
                .collect(),
            maps: (0..N_MAP).map(|_| map_builder(rows)).collect(),
            lists: (0..N_LIST)
                .map(|_| {
                    ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
                        "item",
                        DataType::Utf8,
                        true,
                    )))
                })
                .collect(),
            ints: (0..N_INT)
                .map(|_| Int32Builder::with_capacity(rows))
                .collect(),
            days: Vec::with_capacity(rows),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The UTC day number (days since 1970-01-01) of each buffered row.
    pub fn days(&self) -> &[i32] {
        &self.days
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

    /// Builds the batch (in schema order) and resets the builders.
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
            let array: ArrayRef = match field.data_type() {
                DataType::Utf8 => Arc::new(s.next().ok_or_else(missing)?.finish()),
                DataType::Boolean => Arc::new(b.next().ok_or_else(missing)?.finish()),
                DataType::Timestamp(_, _) => Arc::new(ts.next().ok_or_else(missing)?.finish()),
                DataType::Map(_, _) => Arc::new(m.next().ok_or_else(missing)?.finish()),
                DataType::List(_) => Arc::new(l.next().ok_or_else(missing)?.finish()),
                DataType::Int32 => Arc::new(i.next().ok_or_else(missing)?.finish()),
                other => {
                    return Err(ArrowError::SchemaError(format!("no builder for {other}")));
                }
            };
            columns.push(array);
        }
        self.len = 0;
        self.days.clear();
        RecordBatch::try_new(schema, columns)
    }
}

/// Appends one row's values, each to the next builder of its kind.
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
    fn str(&mut self, v: Option<&str>) {
        self.t.s[self.s].append_option(v);
        self.s += 1;
    }
    fn bool(&mut self, v: Option<bool>) {
        self.t.b[self.b].append_option(v);
        self.b += 1;
    }
    fn time(&mut self, v: Option<i64>) {
        self.t.ts[self.ts].append_option(v);
        self.ts += 1;
    }
    fn int(&mut self, v: Option<i32>) {
        self.t.ints[self.i].append_option(v);
        self.i += 1;
    }
    fn map(&mut self, v: Option<&Context<'_>>) {
        let builder = &mut self.t.maps[self.m];
        match v {
            Some(pairs) => {
                for (k, val) in pairs {
                    builder.keys().append_value(k);
                    builder.values().append_option(val.as_deref());
                }
                builder
                    .append(true)
                    .expect("keys and values appended in pairs");
            }
            None => builder.append(false).expect("no entries for a null map"),
        }
        self.m += 1;
    }
    fn list(&mut self, v: Option<&[std::borrow::Cow<'_, str>]>) {
        let builder = &mut self.t.lists[self.l];
        match v {
            Some(items) => {
                for item in items {
                    builder.values().append_value(item);
                }
                builder.append(true);
            }
            None => builder.append(false),
        }
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
