"""DuckDB's read_json -> Parquet on the benchmark corpus, for comparison with kms-audit.

    python3 -m venv .venv && .venv/bin/pip install duckdb
    .venv/bin/python scripts/duckdb_compare.py 1 [corpus dir]

(Run scripts/bench first: it generates the corpus.) read_json's schema auto-detection runs
out of memory on CloudTrail's drifting nested records (18.8 GiB used on a 730 MB corpus),
so Records are read as JSON and 13 columns extracted, far fewer than kms-audit's 56.
"""
import duckdb, time, resource, sys, os
threads = int(sys.argv[1])
con = duckdb.connect()
con.execute(f"SET threads={threads}")
con.execute("SET memory_limit='8GB'")
con.execute("SET preserve_insertion_order=false")
corpus = sys.argv[2] if len(sys.argv) > 2 else "/tmp/kms-audit-bench/corpus/trail"
glob = f"{corpus}/AWSLogs/*/*/CloudTrail/*/*/*/*/*.json.gz"
out = f"/tmp/duck-out-{threads}.parquet"
t0 = time.time(); c0 = resource.getrusage(resource.RUSAGE_SELF)
con.execute(f"""
COPY (
  SELECT r->>'eventID' AS event_id, CAST(r->>'eventTime' AS TIMESTAMPTZ) AS event_time,
         r->>'eventName' AS event_name, r->>'awsRegion' AS aws_region,
         r->>'recipientAccountId' AS account_id, r->'userIdentity'->>'type' AS principal_type,
         r->'userIdentity'->>'arn' AS principal_arn, r->>'sourceIPAddress' AS source_ip,
         r->>'vpcEndpointId' AS vpc_endpoint_id, r->>'errorCode' AS error_code,
         r->'resources'->0->>'ARN' AS key_arn,
         CAST(r->'requestParameters'->'encryptionContext' AS MAP(VARCHAR, VARCHAR)) AS encryption_context,
         CAST(r->'requestParameters' AS VARCHAR) AS request_parameters
  FROM (SELECT unnest(Records) AS r
        FROM read_json('{glob}', columns={{'Records': 'JSON[]'}}, format='unstructured'))
  WHERE r->>'eventSource' = 'kms.amazonaws.com'
) TO '{out}' (FORMAT parquet, COMPRESSION zstd)
""")
c1 = resource.getrusage(resource.RUSAGE_SELF); t1 = time.time()
n = con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0]
print(f"duckdb {duckdb.__version__} threads={threads}: wall {t1-t0:.2f}s cpu {(c1.ru_utime-c0.ru_utime)+(c1.ru_stime-c0.ru_stime):.2f}s kms rows {n} out {os.path.getsize(out)/1e6:.1f} MB")
