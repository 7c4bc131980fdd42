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
  SELECT principal, account_id, date_trunc('hour', event_time) AS hour, count(*) AS n
  FROM history_events
  WHERE event_name = 'Decrypt' AND error_code IS NULL AND principal IS NOT NULL
  GROUP BY principal, account_id, date_trunc('hour', event_time)
), base AS (
  SELECT principal, account_id, max(n) AS peak, count(*) AS active_hours
  FROM hourly GROUP BY principal, account_id
), peers AS (
  -- A principal with little history of its own is judged against its account's busiest.
  SELECT account_id, max(n) AS peer_peak FROM hourly GROUP BY account_id
)
SELECT cur.principal, cur.key_arn, cur.account_id, cur.aws_region, cur.first_seen, cur.last_seen,
       cur.n AS count, cur.source_ips, cur.event_ids,
       cur.n || ' Decrypt calls in one hour by ' || cur.principal
         || CASE WHEN coalesce(base.active_hours, 0) >= 6
                 THEN ' (its busiest hour before: ' || CAST(base.peak AS VARCHAR) || ')'
                 WHEN peers.peer_peak IS NOT NULL
                 THEN ' (little history of its own; the busiest principal of its account peaked at ' || CAST(peers.peer_peak AS VARCHAR) || ' an hour)'
                 ELSE ' (no history in its account)' END AS summary
FROM cur
LEFT JOIN base ON cur.principal = base.principal AND cur.account_id = base.account_id
LEFT JOIN peers ON cur.account_id = peers.account_id
WHERE (coalesce(base.active_hours, 0) >= 6 AND cur.n > greatest(50, 3 * base.peak))
   OR (coalesce(base.active_hours, 0) < 6 AND peers.peer_peak IS NOT NULL
       AND cur.n > greatest(100, 3 * peers.peer_peak))
   OR (coalesce(base.active_hours, 0) < 6 AND peers.peer_peak IS NULL AND cur.n >= 1000)
