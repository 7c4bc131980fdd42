-- Decrypt volume spike against the principal's own baseline
-- kms_decrypt_spike: see kms_decrypt_spike.yaml for what it means, references and tests.
WITH cur AS (
  SELECT principal, account_id, date_trunc('hour', event_time) AS hour, count(*) AS n,
         min(event_time) AS first_seen, max(event_time) AS last_seen,
         array_agg(DISTINCT source_ip) AS source_ips, array_agg(event_id) AS event_ids,
         max(key_arn) AS key_arn, max(aws_region) AS aws_region
  FROM window_events
  WHERE event_name = 'Decrypt' AND error_code IS NULL AND principal IS NOT NULL
  GROUP BY principal, account_id, date_trunc('hour', event_time)
), hourly AS (
  SELECT principal, date_trunc('hour', event_time) AS hour, count(*) AS n
  FROM history_events
  WHERE event_name = 'Decrypt' AND error_code IS NULL AND principal IS NOT NULL
  GROUP BY principal, date_trunc('hour', event_time)
), base AS (
  SELECT principal, max(n) AS peak, count(*) AS active_hours FROM hourly GROUP BY principal
)
SELECT cur.principal, cur.key_arn, cur.account_id, cur.aws_region, cur.first_seen, cur.last_seen,
       cur.n AS count, cur.source_ips, cur.event_ids,
       cur.n || ' Decrypt calls in one hour by ' || cur.principal || ' (busiest hour before: '
         || coalesce(CAST(base.peak AS VARCHAR), 'no history') || ')' AS summary
FROM cur LEFT JOIN base ON cur.principal = base.principal
WHERE (base.peak IS NOT NULL AND base.active_hours >= 6 AND cur.n > greatest(50, 3 * base.peak))
   OR (base.peak IS NULL AND cur.n >= 1000)
