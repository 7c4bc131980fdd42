-- Decrypt without the encryption context the principal normally sends
-- kms_decrypt_without_usual_context: see kms_decrypt_without_usual_context.yaml for what it means, references and tests.
WITH base AS (
  SELECT principal, count(*) AS n,
         sum(CASE WHEN coalesce(cardinality(encryption_context), 0) > 0 THEN 1 ELSE 0 END) AS with_context
  FROM history_events
  WHERE event_name = 'Decrypt' AND NOT via_aws_service AND principal IS NOT NULL
  GROUP BY principal
)
SELECT w.principal, max(w.key_arn) AS key_arn, w.account_id, max(w.aws_region) AS aws_region,
       min(w.event_time) AS first_seen, max(w.event_time) AS last_seen, count(*) AS count,
       array_agg(DISTINCT w.source_ip) AS source_ips, array_agg(w.event_id) AS event_ids,
       count(*) || ' Decrypt call(s) by ' || w.principal || ' without its usual encryption context' AS summary
FROM window_events w JOIN base b ON b.principal = w.principal
WHERE w.event_name = 'Decrypt' AND NOT w.via_aws_service
  AND coalesce(cardinality(w.encryption_context), 0) = 0
  AND b.n >= 20 AND b.with_context >= 0.95 * b.n
GROUP BY w.principal, w.account_id
